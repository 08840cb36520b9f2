"""Grading messy notebooks end to end, as a course assistant does: `python -m spec.grade` on a folder of
submissions that misbehave in every way a real one can. Bad student code never stops the run: each problem
fails the questions it touches with one line naming the cell or function, every other question is still
graded, and nothing the notebook's top-level code would do (load, train, write files) happens.

One grading run serves all the tests here (a process per notebook, two at a time), on the quick questions
only: Q1 (PyTorch itself), Q21, Q26, Q27 and Q29-Q30, with a 30 s time limit per test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

nbformat = pytest.importorskip("nbformat")  # in the test extra; grading needs it

# The one grading run, several notebooks: its tests on one xdist worker, so that it runs once.
pytestmark = [pytest.mark.timeout(900), pytest.mark.grading, pytest.mark.xdist_group("grading-run")]

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = "Q1,Q21,Q26,Q27,Q29-Q30"
TIME_LIMIT = 30  # seconds a test may run here: the endless loop below meets it

IMPORTS = "\n".join(
    ["import sys", "import numpy as np", "import torch", "import torch.nn as nn", "import torch.nn.functional as F",
     "import MNISTtools"]
)  # fmt: skip
LENET = """class LeNet(nn.Module):
    def __init__(self):
        super(LeNet, self).__init__()
        open("lenet_was_here.txt", "w").close()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(256, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), (2, 2))
        x = x.view(-1, 256)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)"""
NORMALIZE = "def normalize_MNIST_images(x):\n    return 2 * (x.astype(np.float32) - 255 / 2.0) / 255"

SUBMISSIONS = {
    "misbehaves.ipynb": [
        f"%matplotlib inline\n!pip install torch\n{IMPORTS}",
        "import a_module_nobody_installed",
        "def normalize_MNIST_images(x):\n    sys.exit(3)",
        LENET,
        "def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9):\n    while True:\n        pass",
        "xtrain, ltrain = MNISTtools.load(path='./datasets/MNIST')\nopen('top_level_ran.txt', 'w').close()\n"
        "backprop_deep(torch.from_numpy(xtrain), torch.from_numpy(ltrain), LeNet(), T=10)",
        "def plot_losses(losses:\n    pass",
    ],
    "floods.ipynb": [
        IMPORTS,
        "xtrain, ltrain = MNISTtools.load()\nSCALE = 2 / xtrain.max()",
        "def normalize_MNIST_images(x):\n    return (x * SCALE - 1).astype(np.float32)",
        LENET.replace("class LeNet(nn.Module):", "class LeNet(nn.Module:"),
        "def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9):\n"
        "    for k in range(100_000):\n        print('minibatch', k, 'of many, and all its losses:', '0.1 ' * 20)",
    ],
}


def notebook_file(path: Path, sources: list[str]) -> None:
    cells = [nbformat.v4.new_code_cell(source, execution_count=n) for n, source in enumerate(sources, 1)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade the submissions folder once: {"csv": rows, "json": {notebook name: report}, "folder": Path}."""
    folder = tmp_path_factory.mktemp("submissions")
    for name, sources in SUBMISSIONS.items():
        notebook_file(folder / name, sources)
    (folder / "not_a_notebook.ipynb").write_text("these are my answers, see the attached PDF\n")
    (folder / "training_loop_at_top_level.py").write_text(
        f"{IMPORTS}\n\n{NORMALIZE}\n\n{LENET}\n\nnet = LeNet()\nfor epoch in range(3):\n    pass\n"
    )
    out = folder / "grades.csv"
    command = [
        sys.executable, "-m", "spec.grade", str(folder), "--out", str(out), "--jobs", "2", "--timeout", "600",
        "--questions", QUESTIONS, "--pytest-args", f"-m 'not training and not cuda' -o timeout={TIME_LIMIT}",
    ]  # fmt: skip
    # One torch thread: these processes run beside the test workers, and torch's threads would fight for the cores.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])  # spec, from anywhere
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    reports = json.loads(out.with_suffix(".json").read_text())["notebooks"]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    pytorch = json.loads(out.with_suffix(".json").read_text())["pytorch"]
    return {"csv": rows, "json": {Path(r["notebook"]).name: r for r in reports}, "folder": folder, "pytorch": pytorch}


def verdicts(graded: dict, notebook: str) -> dict[str, tuple[str, str]]:
    report = graded["json"][notebook]
    assert "error" not in report, f"{notebook} was not graded: {report['error']}"
    return {q["question"]: (q["outcome"], q["message"]) for q in report["questions"]}


def test_every_submission_gets_a_csv_row(graded: dict) -> None:
    rows = {Path(row["notebook"]).name: row for row in graded["csv"]}
    expected = {*SUBMISSIONS, "not_a_notebook.ipynb", "training_loop_at_top_level.py"}
    assert set(rows) == expected, f"CSV rows for {sorted(rows)}"
    assert list(graded["csv"][0]) == ["notebook", "points", "total", "passed", "graded", "Q21", "Q26", "Q27",
                                      "Q29-Q30", "seconds", "sha256", "torch", "train_seed", "error"]  # fmt: skip
    script = rows["training_loop_at_top_level.py"]
    assert (script["points"], script["total"], script["passed"], script["graded"]) == ("3", "4", "3", "4"), script
    digest = hashlib.sha256((graded["folder"] / "training_loop_at_top_level.py").read_bytes()).hexdigest()
    assert script["sha256"] == digest, f"sha256 {script['sha256']}, not the file's {digest}"
    assert (script["torch"], script["train_seed"]) == (torch.__version__, "0"), script


def test_the_questions_on_pytorch_itself_run_once_a_batch(graded: dict) -> None:
    pytorch = graded["pytorch"]
    assert [(q["question"], q["outcome"]) for q in pytorch["questions"]] == [("Q1", "passed")], pytorch
    for name, report in graded["json"].items():
        run = [q["question"] for q in report.get("questions", [])]
        assert "Q1" not in run, f"{name} ran Q1 again: {run}"


def test_exit_inside_a_graded_function_fails_that_question_naming_the_cell(graded: dict) -> None:
    outcome, message = verdicts(graded, "misbehaves.ipynb")["Q21"]
    assert outcome == "failed"
    assert message.startswith("normalize_MNIST_images called exit() or sys.exit(3) at cell 3 (In [3]), line 2"), message


def test_an_endless_loop_fails_on_the_time_limit_and_is_not_run_again(graded: dict) -> None:
    outcome, message = verdicts(graded, "misbehaves.ipynb")["Q29-Q30"]
    assert outcome == "failed"
    assert f"Timeout (>{TIME_LIMIT}.0s)" in message, message
    assert "in backprop_deep]" in message, message


def test_the_rest_of_a_misbehaving_notebook_is_still_graded(graded: dict) -> None:
    found = verdicts(graded, "misbehaves.ipynb")
    assert found["Q26"][0] == found["Q27"][0] == "passed", f"LeNet's questions: {found['Q26']}, {found['Q27']}"


def test_skipped_and_failed_cells_are_reported(graded: dict) -> None:
    skipped = {(s["where"], s["reason"].split(":")[0]) for s in graded["json"]["misbehaves.ipynb"]["skipped_cells"]}
    for where, reason in [
        ("cell 1 (In [1]), line 1", "it is an IPython magic, shell or help line"),
        ("cell 1 (In [1]), line 2", "it is an IPython magic, shell or help line"),
        ("cell 2 (In [2]), line 1", "it raised ModuleNotFoundError"),
        ("cell 6 (In [6]), line 1", "it loads data or trains, which grading never runs"),
        ("cell 6 (In [6]), line 3", "it is top-level code, which grading does not run"),
        ("cell 7 (In [7]), line 1", "it has a SyntaxError at line 1"),
    ]:
        assert (where, reason) in skipped, f"{where}: {reason!r} not reported; reported {sorted(skipped)}"


def test_nothing_top_level_runs_and_files_written_land_in_a_temporary_folder(graded: dict) -> None:
    for folder in (graded["folder"], ROOT):
        for name in ("top_level_ran.txt", "lenet_was_here.txt"):
            assert not (folder / name).exists(), f"grading left {name} in {folder}"


def test_a_name_only_skipped_code_binds_is_named_with_its_cell(graded: dict) -> None:
    outcome, message = verdicts(graded, "floods.ipynb")["Q21"]
    assert outcome == "failed"
    assert message.startswith("NameError: name 'SCALE' is not defined"), message
    assert "`SCALE` is bound only by cell 2 (In [2]), line 2" in message, message


def test_a_class_in_a_cell_that_does_not_parse_is_missing_with_the_reason(graded: dict) -> None:
    found = verdicts(graded, "floods.ipynb")
    for question in ("Q26", "Q27"):
        outcome, message = found[question]
        assert outcome == "failed"
        assert message.startswith("LeNet is not defined in floods.ipynb: cell 4 (In [4]), line 1"), message
        assert "SyntaxError" in message, message


def test_an_output_flood_is_a_failure(graded: dict) -> None:
    outcome, message = verdicts(graded, "floods.ipynb")["Q29-Q30"]
    assert outcome == "failed"
    assert message.startswith("backprop_deep flooded stdout"), message


def test_a_file_that_is_not_a_notebook_fails_every_graded_question(graded: dict) -> None:
    found = verdicts(graded, "not_a_notebook.ipynb")
    for question, (outcome, message) in found.items():
        assert outcome == "failed", f"{question}: {outcome}"
        assert message.startswith("not_a_notebook.ipynb is not a Jupyter notebook"), f"{question}: {message}"


def test_a_script_without_backprop_deep_is_graded_on_what_it_has(graded: dict) -> None:
    found = verdicts(graded, "training_loop_at_top_level.py")
    assert [found[q][0] for q in ("Q21", "Q26", "Q27")] == ["passed"] * 3, found
    outcome, message = found["Q29-Q30"]
    assert outcome == "failed"
    assert message == (
        "backprop_deep is not defined in training_loop_at_top_level.py: no top-level def, class or import binds it"
    ), message
