"""Gradescope's results.json for one submission: a test per graded question, with the rubric's points.

Gradescope reads /autograder/results/results.json (its specification: a top-level `score`,
`execution_time`, `output`, `visibility`, and `tests[]` with `name`, `number`, `score`, `max_score`,
`status`, `output`, `visibility`). results.schema.json beside this file says the same as a JSON Schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spec.grade.rubric import Rubric
from spec.harness.contract import QUESTIONS
from spec.reports.verdicts import NotebookResult

SCHEMA = Path(__file__).with_name("results.schema.json")
NOT_GRADABLE = "Not gradable"


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def results(result: NotebookResult, rubric: Rubric, seconds: float) -> dict[str, Any]:
    """A graded submission: each of the rubric's questions as a test; one that did not run is failed."""
    if result.error:
        return not_gradable(result.error, rubric, seconds)
    verdicts = {v.question: v for v in result.questions}
    tests = []
    for question in rubric.graded:
        verdict, points = verdicts.get(question), rubric.points_of(question)
        passed = verdict is not None and verdict.outcome == "passed"
        if verdict is None:
            output = "no verdict: the grading run ended before this question"
        elif verdict.outcome == "skipped":
            output = f"not assessed by this autograder ({verdict.message}): ask the course staff"
        else:
            output = verdict.message or "passed"
        tests.append({
            "name": f"{question}: {QUESTIONS[question].title}",
            "number": question,
            "score": points if passed else 0.0,
            "max_score": points,
            "status": "passed" if passed else "failed",
            "output": output,
            "visibility": rubric.visibility_of(question),
        })  # fmt: skip
    score = sum(t["score"] for t in tests)
    lines = [
        f"{sum(t['status'] == 'passed' for t in tests)} of {len(tests)} questions passed: {score:g} of "
        f"{rubric.total:g} points.",
        f"Graded with torch {result.torch}, training seed {result.train_seed}; the notebook's code ran "
        f"{result.sandbox}.",
    ]
    if result.skipped_cells:
        lines.append(f"{len(result.skipped_cells)} statements of the notebook were not run (top-level code, or "
                     "code that raised): grading runs the imports, the definitions and what they need.")  # fmt: skip
    return _top(score, seconds, "\n".join(lines), tests)


def not_gradable(why: str, rubric: Rubric, seconds: float) -> dict[str, Any]:
    """A submission with no grade: one visible failed test that says why, and 0 points."""
    test = {"name": NOT_GRADABLE, "score": 0.0, "max_score": rubric.total, "status": "failed", "output": why,
            "visibility": "visible"}  # fmt: skip
    return _top(0.0, seconds, f"{NOT_GRADABLE}: {why}", [test])


def _top(score: float, seconds: float, output: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "score": score,
        "execution_time": round(seconds, 1),
        "output": output,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
