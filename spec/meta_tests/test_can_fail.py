"""The spec can fail, and fails only where it should: graded on each broken notebook in spec/meta_tests/broken/
(the printed solution with one of the assignment's common mistakes), exactly the questions the mistake
breaks fail, and the other questions of its kind pass. The printed solution itself passes them all, and
a notebook graded twice gets the same verdicts, messages included."""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.grade.submission import grade_one
from spec.meta_tests.broken.mistakes import MISTAKES, RUNS, SOLUTION
from spec.meta_tests.broken.mistakes import path as notebook_path

pytestmark = [pytest.mark.timeout(600), pytest.mark.grading]  # a grading run in a subprocess
pytest.importorskip("nbformat")  # grading reads notebooks with it (the test extra)


def grade(notebook: Path, questions: tuple[str, ...]) -> dict[str, dict]:
    """The spec's quick tests of `questions` on `notebook`, in a process of its own, as `python -m spec.grade`
    runs it (with one torch thread: it runs beside the test workers); each question's verdict."""
    args = ["--questions", ",".join(questions), "-m", "not cuda and not training", "-p", "no:xdist"]
    report = grade_one(notebook, timeout=600, pytest_args=args, threads=1)
    assert not report.error, f"{notebook.name}: {report.error}"
    return {q.question: q.to_json() for q in report.questions}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_mistake_fails_exactly_the_questions_it_breaks(name: str) -> None:
    mistake = MISTAKES[name]
    questions = RUNS[mistake.kind]
    verdicts = grade(notebook_path(name), questions)
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


def test_the_printed_solution_passes_every_question_the_mistakes_are_graded_on() -> None:
    questions = tuple(dict.fromkeys(q for runs in RUNS.values() for q in runs))
    verdicts = grade(SOLUTION, questions)
    failed = {q: v["message"] for q, v in verdicts.items() if v["outcome"] != "passed"}
    assert not failed, f"the printed solution fails: {failed}"


def test_a_notebook_graded_twice_gets_the_same_verdicts() -> None:
    """fixed_blocks fails on what its shuffled draws put together: the draws are seeded by each test's id."""
    first, second = (grade(notebook_path("fixed_blocks"), ("Q29-Q30",)) for _ in range(2))
    assert first == second, f"two gradings of fixed_blocks differ:\n{first}\n{second}"
