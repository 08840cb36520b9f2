"""The spec can fail, and fails only where it should: graded on each broken notebook in spec/broken/
(the printed solution with one of the assignment's common mistakes), exactly the questions the mistake
breaks fail, and the other questions of its kind pass. The printed solution itself passes them all, and
a notebook graded twice gets the same verdicts, messages included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec.broken.mistakes import MISTAKES, RUNS, SOLUTION
from spec.broken.mistakes import path as notebook_path
from spec.contract import question_of

pytestmark = pytest.mark.timeout(600)  # a grading run in a subprocess
pytest.importorskip("nbformat")  # grading reads notebooks with it (the test extra)

ROOT = Path(__file__).resolve().parent.parent
MODULES = {question_of(p.name): f"spec/{p.name}" for p in sorted((ROOT / "spec").glob("test_q*.py"))}


def grade(notebook: Path, questions: tuple[str, ...], tmp_path: Path) -> dict[str, dict]:
    """Run the spec's cheap tests of `questions` on `notebook`, in a fresh process; each question's verdict."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    stem = tmp_path / "grades"
    # One torch thread: these processes run beside the test workers, and torch's threads would fight for the cores.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "pytest", *(MODULES[q] for q in questions), "--impl", str(notebook),
        "-m", "not cuda and not training", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
        f"--grade-report={stem}",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = Path(f"{stem}.json")
    assert report.exists(), f"grading {notebook.name} wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode in (0, 1), f"pytest exited {proc.returncode} on {notebook.name}:\n{proc.stdout[-3000:]}"
    return {q["question"]: q for q in json.loads(report.read_text())["questions"]}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_mistake_fails_exactly_the_questions_it_breaks(name: str, tmp_path: Path) -> None:
    mistake = MISTAKES[name]
    questions = RUNS[mistake.kind]
    verdicts = grade(notebook_path(name), questions, tmp_path)
    assert sorted(verdicts) == sorted(questions), f"{name}: graded {sorted(verdicts)}, not {sorted(questions)}"
    for q in questions:
        expected = "failed" if q in mistake.breaks else "passed"
        verdict = verdicts[q]
        assert verdict["outcome"] == expected, (
            f"{name} ({mistake.what}): {q} {verdict['outcome']}, expected {expected}. {verdict['message']}"
        )
        if expected == "failed":
            assert verdict["message"], f"{name}: {q} failed without a message"
            assert "\n" not in verdict["message"], f"{name}: {q}'s message {verdict['message']!r}"


def test_the_printed_solution_passes_every_question_the_mistakes_are_graded_on(tmp_path: Path) -> None:
    questions = tuple(sorted({q for runs in RUNS.values() for q in runs}, key=list(MODULES).index))
    verdicts = grade(SOLUTION, questions, tmp_path)
    failed = {q: v["message"] for q, v in verdicts.items() if v["outcome"] != "passed"}
    assert not failed, f"the printed solution fails: {failed}"


def test_a_notebook_graded_twice_gets_the_same_verdicts(tmp_path: Path) -> None:
    """fixed_blocks fails on what its shuffled draws put together: the draws are seeded by each test's id."""
    first, second = (grade(notebook_path("fixed_blocks"), ("Q29-Q30",), tmp_path / run) for run in ("a", "b"))
    assert first == second, f"two gradings of fixed_blocks differ:\n{first}\n{second}"
