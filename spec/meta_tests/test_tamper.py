"""Notebooks that try to pass without a correct solution, or to break grading for others, graded as a class.

Each is the printed solution (spec/meta_tests/fixtures/printed_solution.ipynb) with one more cell: a trick
that redefines a graded name (or, with `hides`, takes the solution's own definition away first). One
`python -m spec.grade` run grades them all, beside an honest classmate, on the quick questions. Each trick
fails exactly the questions it cheats on, every other question keeps its honest verdict, and nothing
outside the workers' folders changes: the checkout, site-packages, the classmate's file; and no connection
reaches a server on this machine. Tricks that only bubblewrap stops run where it runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from spec.meta_tests.broken.mistakes import SOLUTION
from spec.sandbox import containment

nbformat = pytest.importorskip("nbformat")

# One grading run, many notebooks: its tests on one xdist worker, so that it runs once.
pytestmark = [pytest.mark.timeout(900), pytest.mark.grading, pytest.mark.xdist_group("tamper-run")]

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ("Q21", "Q25", "Q26", "Q27", "Q29-Q30")
TIME_LIMIT = 30  # seconds a test may run: the endless loop meets it
BUBBLEWRAP = containment.choose().isolated
ALL = QUESTIONS


@dataclass(frozen=True)
class Trick:
    cell: str  # appended to the printed solution; {folder}, {repo}, {site} and {port} are filled in
    fails: tuple[str, ...]  # the questions it cheats on, which must fail
    hides: tuple[str, ...] = ()  # the solution's own definitions taken away first
    needs_bubblewrap: bool = False  # what only bubblewrap keeps out


WRONG = "def normalize_MNIST_images(x):\n    return x / 255.0\n"  # [0, 1]: fails Q21
TRICKS = {
    "forged_report": Trick(
        "import os, json\ndef normalize_MNIST_images(x):\n"
        "    forged = {'graded_passed': 99, 'graded': 99, 'questions': []}\n"
        "    for target in ('grades.json', '../grades.json', '/tmp/grades.json', '{folder}/grades.json'):\n"
        "        try:\n            with open(target, 'w') as f:\n                json.dump(forged, f)\n"
        "        except OSError:\n            pass\n    os._exit(0)\n",
        ("Q21",),
    ),
    "pytest_exit": Trick(
        "import pytest\ndef normalize_MNIST_images(x):\n    pytest.exit('all done', returncode=0)\n", ("Q21",)
    ),
    "skip_in_forward": Trick(
        "import unittest\n_Honest = LeNet\nclass LeNet(_Honest):\n    def forward(self, x):\n"
        "        raise unittest.SkipTest('nothing to see')\n",
        ("Q25", "Q26"),
    ),
    "equal_to_everything": Trick(
        "import numpy as np\nclass Agreeable(np.ndarray):\n    def __eq__(self, other):\n        return True\n"
        "    __ne__ = lambda self, other: False\n"
        "def normalize_MNIST_images(x):\n    return np.zeros(x.shape, np.float32).view(Agreeable)\n",
        ("Q21",),
    ),
    "torch_function_liar": Trick(
        "import torch\nclass Liar(torch.Tensor):\n    @classmethod\n"
        "    def __torch_function__(cls, f, t, a=(), k=None):\n        return True\n"
        "_Honest = LeNet\nclass LeNet(_Honest):\n    def forward(self, x):\n"
        "        return super().forward(x).as_subclass(Liar)\n",
        ("Q25", "Q26"),
    ),
    "patched_comparisons": Trick(
        "import torch, numpy\n_Honest = LeNet\nclass LeNet(_Honest):\n"
        "    torch.testing.assert_close = lambda *a, **k: None\n    torch.allclose = lambda *a, **k: True\n"
        "    numpy.testing.assert_allclose = lambda *a, **k: None\n"
        "    def forward(self, x):\n        x = F.max_pool2d(self.conv1(x), 2)\n"
        "        x = F.max_pool2d(self.conv2(x), 2)\n        return self.fc3(self.fc2(self.fc1(x.view(-1, 256))))\n",
        ("Q26",),
    ),
    "reference_package": Trick(
        "from mnist_lab import normalize_MNIST_images, LeNet\n",
        ("Q21", "Q25", "Q26", "Q27"),
        hides=("normalize_MNIST_images", "LeNet"),
    ),
    "spec_oracle": Trick(
        "from spec.sandbox.reference import PrintedLeNet as LeNet\n", ("Q25", "Q26", "Q27"), hides=("LeNet",)
    ),
    "reads_a_classmate": Trick(
        "import json\ndef normalize_MNIST_images(x):\n    try:\n"
        "        cells = json.load(open('{folder}/classmate.ipynb'))['cells']\n"
        "        code = [''.join(c['source']) for c in cells]\n"
        "        code = [c for c in code if 'def normalize_MNIST_images' in c]\n"
        "        scope = {}\n        exec(code[0].replace('%matplotlib inline', ''), scope)\n"
        "        return scope['normalize_MNIST_images'](x)\n    except Exception:\n        return x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "rewrites_a_classmate": Trick(
        "def normalize_MNIST_images(x):\n    for name in ('{folder}/classmate.ipynb',):\n        try:\n"
        "            open(name, 'w').write('overwritten')\n        except OSError:\n            pass\n"
        "    return x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "writes_into_the_spec": Trick(
        "import os\ndef normalize_MNIST_images(x):\n"
        "    for name, text in (('{repo}/spec/questions/conftest.py', 'def pytest_runtest_makereport(): pass'),\n"
        "                       ('{site}/zz_pass_everything.pth', 'import os')):\n"
        "        try:\n            open(name, 'w').write(text)\n        except OSError:\n            pass\n"
        "    return x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "reads_the_test_labels": Trick(  # right only where it finds MNIST's labels: a leak would pass Q21
        "import glob, os, sys\ndef normalize_MNIST_images(x):\n"
        "    places = [os.path.join(p, 'mnist_lab', 'embedded_mnist') for p in sys.path] + ['{repo}/data/mnist']\n"
        "    found = [f for p in places for f in glob.glob(os.path.join(p, '*labels*'))]\n"
        "    found += glob.glob('/tmp/*/private/*labels*') + glob.glob('/tmp/*/*labels*.npy')\n"
        "    readable = [f for f in found if os.access(f, os.R_OK)]\n"
        "    return 2 * (x.astype('float32') - 127.5) / 255 if readable else x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "fetches_code": Trick(
        "import socket\ndef normalize_MNIST_images(x):\n    try:\n"
        "        code = socket.create_connection(('127.0.0.1', {port}), timeout=3).recv(1000).decode()\n"
        "        scope = {}\n        exec(code, scope)\n        return scope['normalize_MNIST_images'](x)\n"
        "    except OSError:\n        return x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "kills_the_grader": Trick(
        "import os, signal\ndef normalize_MNIST_images(x):\n    os.kill(os.getppid(), signal.SIGTERM)\n"
        "    return x / 255.0\n",
        ("Q21",),
        needs_bubblewrap=True,
    ),
    "cancels_the_alarm": Trick(
        "import signal\ndef backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9):\n"
        "    signal.setitimer(signal.ITIMER_REAL, 0)\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    while True:\n        pass\n",
        ("Q29-Q30",),
    ),
    "floods_fd_1": Trick(
        "import os\ndef normalize_MNIST_images(x):\n    while True:\n        os.write(1, b'x' * 2**20)\n", ("Q21",)
    ),
    "forks": Trick(
        "import os, time\ndef normalize_MNIST_images(x):\n    for _ in range(4):\n        if os.fork() == 0:\n"
        "            time.sleep(600)\n            os._exit(0)\n    return x / 255.0\n",
        ("Q21",),
    ),
    "grabs_memory": Trick(  # 12 GB, past the worker's memory limit: MemoryError, or a correct answer without it
        "import numpy as np\ndef normalize_MNIST_images(x):\n    hog = np.empty(12 * 2**30, dtype=np.uint8)\n"
        "    return 2 * (x.astype(np.float32) - 255 / 2.0) / 255 + hog[:0].sum()\n",
        ("Q21",),
    ),
    "exits_while_defined": Trick("import os\nclass LeNet(nn.Module):\n    os._exit(0)\n", ALL),
}


def notebook_with(trick: Trick, fill: dict[str, str]) -> object:
    book = nbformat.read(SOLUTION, as_version=4)
    for name in trick.hides:
        for cell in book.cells:
            cell.source = cell.source.replace(f"def {name}(", f"def _solution_{name}(")
            cell.source = cell.source.replace(f"class {name}(", f"class _Solution{name}(")
    source = trick.cell
    for key, value in fill.items():
        source = source.replace("{" + key + "}", value)
    book.cells.append(nbformat.v4.new_code_cell(source))
    return book


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def checkout_state() -> str:
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=False)  # fmt: skip
    return proc.stdout if proc.returncode == 0 else "(not a git checkout)"


class Listener:
    """A TCP server on this machine that counts who reached it (and offers them code)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port, self.reached, self.done = self.server.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.done:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.reached += 1
            connection.sendall(b"def normalize_MNIST_images(x):\n    return 2 * x.astype('float32') / 255 - 1\n")
            connection.close()

    def close(self) -> None:
        self.done = True
        self.thread.join()
        self.server.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("class")
    listener = Listener()
    site = sysconfig.get_paths()["purelib"]
    fill = {"folder": str(folder), "repo": str(ROOT), "site": site, "port": str(listener.port)}
    tricks = {name: t for name, t in TRICKS.items() if BUBBLEWRAP or not t.needs_bubblewrap}
    for name, trick in tricks.items():
        nbformat.write(notebook_with(trick, fill), folder / f"{name}.ipynb")
    (folder / "classmate.ipynb").write_bytes(SOLUTION.read_bytes())
    before = {"checkout": checkout_state(), "site": sorted(os.listdir(site)), "class": tree_digest(folder)}
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    command = [sys.executable, "-m", "spec.grade", str(folder), "--out", str(out), "--jobs", "2", "--timeout", "600",
               "--questions", ",".join(QUESTIONS), "--pytest-args",
               f"-m 'not training and not cuda' -o timeout={TIME_LIMIT} -p no:xdist"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env["OMP_NUM_THREADS"] = "1"  # beside the test workers
    env["PYTHONPATH"] = str(ROOT)
    try:
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    finally:
        listener.close()
    after = {"checkout": checkout_state(), "site": sorted(os.listdir(site)), "class": tree_digest(folder)}
    reports = {Path(r["notebook"]).stem: r for r in json.loads(out.with_suffix(".json").read_text())["notebooks"]}
    with out.open() as f:
        rows = list(csv.DictReader(f))
    return {
        "proc": proc, "reports": reports, "rows": rows, "tricks": tricks, "before": before, "after": after,
        "reached": listener.reached,
    }  # fmt: skip


def test_the_grading_run_ends_on_its_own_with_a_row_for_every_notebook(graded: dict) -> None:
    proc = graded["proc"]
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert {row["notebook"].rsplit("/", 1)[-1].removesuffix(".ipynb") for row in graded["rows"]} == {
        *graded["tricks"], "classmate"}, graded["rows"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(TRICKS))
def test_a_trick_fails_the_questions_it_cheats_on_and_no_other(graded: dict, name: str) -> None:
    if name not in graded["tricks"]:
        pytest.skip("only bubblewrap keeps this one out, and it cannot run here")
    report = graded["reports"][name]
    assert "error" not in report, f"{name} was not graded: {report['error']}"
    verdicts = {q["question"]: (q["outcome"], q["message"]) for q in report["questions"]}
    assert sorted(verdicts) == sorted(QUESTIONS), f"{name}: graded {sorted(verdicts)}"
    for question, (outcome, message) in verdicts.items():
        expected = "failed" if question in graded["tricks"][name].fails else "passed"
        assert outcome == expected, f"{name}: {question} {outcome}, expected {expected}: {message}"
        assert "\n" not in message, f"{name}: {question}'s message has more than one line: {message!r}"


def test_the_honest_classmate_passes_everything(graded: dict) -> None:
    report = graded["reports"]["classmate"]
    failed = {q["question"]: q["message"] for q in report["questions"] if q["outcome"] != "passed"}
    assert not failed, f"the printed solution, graded beside the tricks, fails: {failed}"


def test_nothing_outside_the_workers_changed(graded: dict) -> None:
    before, after = graded["before"], graded["after"]
    assert after["checkout"] == before["checkout"], f"the checkout changed:\n{after['checkout']}"
    assert after["site"] == before["site"], f"site-packages changed: {set(after['site']) ^ set(before['site'])}"
    changed = {k for k in before["class"] if before["class"][k] != after["class"].get(k)}
    assert not changed, f"submissions changed: {sorted(changed)}"
    new = set(after["class"]) - set(before["class"])
    assert not new, f"files appeared beside the submissions: {sorted(new)}"
    if BUBBLEWRAP:
        assert graded["reached"] == 0, f"{graded['reached']} connections reached a server on this machine"


def test_each_report_says_where_the_code_ran(graded: dict) -> None:
    for name, report in graded["reports"].items():
        assert report.get("sandbox") == containment.choose().line(), f"{name}: sandbox {report.get('sandbox')!r}"
