"""check() (spec/check.py): the spec's question modules inside a student's own kernel.

The quick tests here call check() on namespaces that need no run of the spec, and the pieces it shows. The
`grading` ones run it as a student does, in a real Jupyter kernel (nbclient and ipykernel), started in a
folder of its own with the course's MNISTtools beside it: a wrong definition's failure, a right one's pass,
a missing name, the stop button in the middle of a training run, and the same verdicts as grading gives.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from spec.check import check, parse
from spec.harness.contract import QUESTIONS
from spec.harness.live import LiveImplementation
from spec.harness.notebook import plan
from spec.meta_tests.broken.mistakes import FOLDER, SOLUTION
from spec.reports.in_kernel import CheckResult, Status
from spec.reports.verdicts import QuestionVerdict

ROOT = Path(__file__).resolve().parents[2]
MNISTTOOLS = "import mnist_lab\nfrom mnist_lab import show\n\n\ndef load(dataset='training', path=None):\n" \
    "    return mnist_lab.load(dataset)\n"  # fmt: skip
WRONG_NORMALIZE = "import numpy as np\n\ndef normalize_MNIST_images(x):\n    return x.astype(np.float32) / 255"
IMPORT = "from spec.check import check"
ALIVE = "print('the kernel still runs', 6 * 7)"
# The broken notebooks compared with grading, each failing other questions; and the questions compared.
BROKEN = ("normalize_min_max", "wrong_layer_size", "no_momentum")
COMPARED = "Q21,Q22,Q23,Q24,Q25,Q26,Q27,Q28,Q29-Q30"
PLACE = re.compile(r" \[(?:cell \d+ \(In \[\d+\]\)|Cell In\[\d+\]), line \d+, in \S+\]$")


def definitions(path: Path) -> list[str]:
    """The statements grading runs of a notebook (its imports, definitions and what they need), a cell each."""
    notebook = plan(path)
    return [ast.get_source_segment(notebook.sources[s.cell.filename], s.node) for s in notebook.run]


# --- quick: no run of the spec ---------------------------------------------------------------------------


def test_questions_are_named_as_a_student_would() -> None:
    assert parse("q29") == ["Q29-Q30"], "Q29 is graded with Q30: check('Q29') must run Q29-Q30"
    assert parse("26, Q21") == ["Q21", "Q26"], "questions come in the assignment's order, with or without the Q"
    assert parse(None) == [q for q, question in QUESTIONS.items() if question.graded]
    with pytest.raises(ValueError, match=r"^check: no such question: Q99 \(the questions are Q1, Q2"):
        parse("Q99")


def test_a_wrong_question_is_one_line_and_runs_nothing() -> None:
    result = check("Q99", namespace={})
    said = result.error
    assert said.startswith("check: no such question: Q99 (the questions are Q1"), f"check('Q99') said {said!r}"
    assert "\n" not in repr(result), f"check('Q99') shows more than one line:\n{result!r}"


def test_questions_whose_names_are_missing_wait_for_them() -> None:
    """Nothing defined: no question runs, and the answer names what is missing and who waits for it."""
    result = check(namespace={"LeNet": "not a class"})
    assert not result.verdicts, f"questions ran on an empty kernel: {result.verdicts}"
    assert result.waiting["Q26"] == ["LeNet"], f"Q26 waits for {result.waiting.get('Q26')}, not LeNet"
    assert result.waiting["Q31"] == ["LeNet", "backprop_deep"], f"Q31 waits for {result.waiting.get('Q31')}"
    shown = repr(result)
    assert "Q26       not checked  needs `LeNet`, not defined in this kernel yet" in shown, shown
    assert "Not defined yet: `LeNet` and `backprop_deep` and `normalize_MNIST_images`" in shown, shown
    assert not result.passed, "a kernel that defines nothing passed"


def test_the_table_is_html_in_jupyter_with_the_messages_escaped() -> None:
    verdict = QuestionVerdict("Q26", "The LeNet class", True, "failed", "printed `<LeNet>` & more", {"failed": 1})
    markup = CheckResult([verdict], seconds=1.25)._repr_html_()
    assert ">Q26</td>" in markup, markup
    assert ">failed</b>" in markup, markup
    assert "printed <code>&lt;LeNet&gt;</code> &amp; more" in markup, f"the message is not escaped: {markup}"
    assert "1 failed in 1.2 s" in markup, markup


class Recording(Status):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, float, float]] = []

    def training(self, epoch: int, epochs: int, loss: float, done: float, seconds: float) -> None:
        super().training(epoch, epochs, loss, done, seconds)
        self.seen.append((epoch, epochs, loss, round(done, 4)))


def test_a_training_run_reports_its_progress_from_the_lines_it_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real run (10,000 images or more) passes each loss line on as it is printed; the output is unchanged."""

    def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=0.001, rho=0.9):
        for epoch in range(T):
            for k in range(99, len(xtrain) // B, 100):
                print("[%d, %5d] loss: %.3f" % (epoch + 1, k + 1, 2.0 / (epoch + 1)))

    watcher = Recording()
    watcher.started("Q31", "test_accuracy", True)
    impl = LiveImplementation({"backprop_deep": backprop_deep}, tmp_path, watcher)
    impl.backprop_deep(range(20_000), None, None, T=2)
    assert watcher.seen[0] == (1, 2, 2.0, 0.25), f"the first line became {watcher.seen[0]}"
    assert watcher.seen[-1] == (2, 2, 1.0, 1.0), f"the last line became {watcher.seen[-1]}"
    assert len(watcher.seen) == 4, f"4 loss lines printed, {len(watcher.seen)} seen"
    assert watcher.line.startswith("Q31: training your LeNet with your backprop_deep: epoch 2 of 2, loss 1.000")
    assert capsys.readouterr().out.count("loss:") == 4, "the loop's own output was lost"
    impl.backprop_deep(range(300), None, None, T=1)
    assert len(watcher.seen) == 4, "a call on a few images (a test of the loop's mechanics) showed progress"


# --- a real kernel ---------------------------------------------------------------------------------------


@pytest.fixture
def kernel_folder(tmp_path: Path) -> Path:
    """A student's folder, not the checkout: the course's MNISTtools, nothing of the spec, and a pytest
    configuration and conftest.py of the student's own, which check() must not read."""
    (tmp_path / "MNISTtools.py").write_text(MNISTTOOLS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (tmp_path / "conftest.py").write_text("raise SystemExit('check() read the conftest.py of the student')\n")
    return tmp_path


def kernel_env() -> dict[str, str]:
    """The test's environment, one torch thread (the kernel runs beside the test workers), no pytest state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def execute(folder: Path, *sources: str) -> list[str]:
    """Run these cells in a new kernel started in `folder`; each cell's output as text (HTML where given)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}})
    client.execute(env=kernel_env())
    return [_text(cell.outputs) for cell in notebook.cells]


def _text(outputs: list) -> str:
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/html") or output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


@pytest.mark.grading
def test_in_a_kernel_a_wrong_definition_fails_with_the_spec_s_message(kernel_folder: Path) -> None:
    out = execute(kernel_folder, WRONG_NORMALIZE, IMPORT, "check('Q21')", ALIVE)
    assert ">failed</b>" in out[2], f"check('Q21') did not fail Q21:\n{out[2]}"
    assert "not 2 v / 255 - 1" in out[2], f"check('Q21') did not give the spec's message:\n{out[2]}"
    assert "the kernel still runs 42" in out[3], f"the cell after check() printed {out[3]!r}"


@pytest.mark.grading
def test_in_a_kernel_the_printed_definitions_pass(kernel_folder: Path) -> None:
    out = execute(kernel_folder, *definitions(SOLUTION), IMPORT, "%load_ext spec.check", "%check Q21,Q26", ALIVE)
    shown = out[-2]
    assert "2 passed" in shown, f"%check Q21,Q26 on the printed definitions:\n{shown}"
    assert "failed" not in shown, f"%check Q21,Q26 on the printed definitions:\n{shown}"
    assert "the kernel still runs 42" in out[-1], f"the cell after %check printed {out[-1]!r}"


@pytest.mark.grading
def test_in_a_kernel_a_missing_definition_is_named(kernel_folder: Path) -> None:
    out = execute(kernel_folder, WRONG_NORMALIZE, IMPORT, "check('Q26')", ALIVE)
    assert "needs <code>LeNet</code>, not defined in this kernel yet" in out[2], f"check('Q26'):\n{out[2]}"
    assert "the kernel still runs 42" in out[3], f"the cell after check() printed {out[3]!r}"


@pytest.mark.grading
def test_the_stop_button_ends_a_training_check_and_the_kernel_goes_on(kernel_folder: Path) -> None:
    """check('Q31') trains the kernel's LeNet; an interrupt once its progress shows ends it, and says so."""
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(kernel_folder), env=kernel_env())
    try:
        for source in [*definitions(SOLUTION), IMPORT]:
            reply = client.execute_interactive(source, timeout=120, output_hook=lambda message: None)
            assert reply["content"]["status"] == "ok", f"{source!r}: {reply['content']}"
        shown: list[str] = []
        client.execute("check('Q31')")
        deadline = time.monotonic() + 300
        while not any("epoch" in text for text in shown):
            assert time.monotonic() < deadline, f"no training progress in 300 s; shown:\n{shown[-3:]}"
            shown.append(_message_text(client.get_iopub_msg(timeout=300)))
        manager.interrupt_kernel()
        message: dict = {}
        while message.get("msg_type") not in ("execute_result", "error"):
            try:
                message = client.get_iopub_msg(timeout=120)
            except queue.Empty:
                pytest.fail(f"check('Q31') did not end within 120 s of the interrupt; last shown:\n{shown[-3:]}")
            shown.append(_message_text(message))
        assert ">Q31</td>" in shown[-1], f"check('Q31') ended without Q31:\n{shown[-1]}"
        assert ">interrupted</b>" in shown[-1], f"check('Q31') ended, not interrupted:\n{shown[-1]}"
        after: list[str] = []
        reply = client.execute_interactive(ALIVE, timeout=60, output_hook=lambda m: after.append(_message_text(m)))
        assert reply["content"]["status"] == "ok", f"the cell after the interrupt: {reply['content']}"
        assert "the kernel still runs 42" in "".join(after), f"the cell after the interrupt printed {after}"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _message_text(message: dict) -> str:
    content = message.get("content", {})
    data = content.get("data", {})
    return content.get("text") or data.get("text/html") or data.get("text/plain") or ""


@pytest.mark.grading
@pytest.mark.timeout(900)
def test_check_gives_the_verdicts_grading_gives(kernel_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The printed solution and three broken notebooks, on the questions that need no training run: check()
    in a kernel with each one's definitions, and `python -m spec.grade`, agree on every outcome and message
    (but for grading's place in the notebook, `[cell 12 (In [8]), line 3, ...]`, which a kernel has not)."""
    notebooks = [SOLUTION, *(FOLDER / f"{name}.ipynb" for name in BROKEN)]
    submissions = tmp_path_factory.mktemp("submissions")
    for path in notebooks:
        (submissions / path.name).write_bytes(path.read_bytes())
    out = submissions / "grades.csv"
    command = [sys.executable, "-m", "spec.grade", str(submissions), "--out", str(out), "--jobs", "2",
               "--questions", COMPARED, "--pytest-args", "-m 'not training'"]  # fmt: skip
    env = kernel_env() | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(command, cwd=submissions, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    graded = {Path(r["notebook"]).name: r for r in json.loads(out.with_suffix(".json").read_text())["notebooks"]}
    for path in notebooks:
        report = graded[path.name]
        assert "error" not in report, f"{path.name} was not graded: {report['error']}"
        verdicts = "print(json.dumps([[v.question, v.outcome, v.message] for v in result.verdicts]))"
        cells = [*definitions(path), IMPORT, f"result = check({COMPARED!r}, train=False)", f"import json\n{verdicts}"]
        checked = {q: (outcome, message) for q, outcome, message in json.loads(execute(kernel_folder, *cells)[-1])}
        expected = {q["question"]: (q["outcome"], q["message"]) for q in report["questions"]}
        assert _places(checked) == _places(expected), f"{path.name}: check() and grading name the student's code " \
            f"in other questions:\n{checked}\n{expected}"  # fmt: skip
        assert _without_places(checked) == _without_places(expected), (
            f"{path.name}: check() and grading disagree:\n{checked}\n{expected}"
        )


def _places(verdicts: dict[str, tuple[str, str]]) -> set[str]:
    """The questions whose message names a place in the student's code."""
    return {q for q, (_, message) in verdicts.items() if PLACE.search(message)}


def _without_places(verdicts: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The messages without the place they end with: grading's ' [cell 63 (In [37]), line 49, in forward]', a
    kernel's ' [Cell In[12], line 49, in forward]'."""
    return {q: (outcome, PLACE.sub("", message)) for q, (outcome, message) in verdicts.items()}
