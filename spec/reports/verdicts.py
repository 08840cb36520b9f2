"""Verdicts, typed: one per question (`QuestionVerdict`), one result per notebook (`NotebookResult`), and the
collector that folds the tests' reports into them (`VerdictCollector`), which the grade report, the spec
report and the batch grader all read.

A question fails if any of its tests failed or errored, is skipped if all were skipped, and passes
otherwise. Its message is the first line of the failure of its first failing test (in file order), with
where in the student's code it happened. The JSON of each is described once, in SCHEMA (docs/grading.md
shows it, and a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from spec.harness.contract import QUESTIONS
from spec.harness.text import NOTE, QUESTION, STUDENT_CODE, markdown_cell

OUTCOMES = ("passed", "failed", "skipped")

# The grade report's JSON (--grade-report PATH.json, and each notebook of the batch grader's JSON): key -> meaning.
SCHEMA = {
    "notebook": "the submission as the batch grader was given it (batch grading only)",
    "seconds": "wall time of its grading, in seconds (batch grading only)",
    "sha256": "the submission's SHA-256 when it was graded (batch grading only)",
    "fingerprint": "the spec's code, torch's version, the questions and pytest's arguments, hashed: a batch run "
    "again keeps a grade whose sha256 and fingerprint are unchanged (batch grading only)",
    "error": "why it has no grade, in one line; the only key besides `notebook`, `sha256` and `fingerprint` then "
    "(batch grading only)",
    "implementation": "what was graded: the notebook, script or module",
    "train_seed": "the seed of the training runs (--train-seed)",
    "torch": "the torch version that graded it",
    "sandbox": "where the graded code ran: which sandbox, and what it kept out (spec/sandbox/containment.py)",
    "graded_passed": "graded questions passed",
    "graded": "graded questions run",
    "accuracy": "the test accuracy of the student's training on the CPU, in %, by epochs: {\"3\": ..., \"10\": ...}",
    "questions": "one entry per question run, in the assignment's order:",
    "questions[].question": "its name: Q21, Q29-Q30, ...",
    "questions[].title": "what it asks",
    "questions[].graded": "true where it tests the student's code, false for PyTorch itself (Q1-Q20)",
    "questions[].outcome": "passed, failed or skipped",
    "questions[].message": "a failure's first line and where in the student's code; a skip's reason",
    "questions[].tests": "its tests' outcomes counted: {passed, failed, skipped}",
    "skipped_cells": "the notebook's code that grading did not run, or that raised when it was built:",
    "skipped_cells[]": "{cell, lines: [first, last], where, code: its first line, reason}",
}


def schema_markdown() -> str:
    """SCHEMA as the table docs/grading.md shows."""
    rows = [f"| `{key}` | {markdown_cell(meaning)} |" for key, meaning in SCHEMA.items()]
    return "\n".join(["| key | meaning |", "|---|---|", *rows])


@dataclass(frozen=True)
class QuestionVerdict:
    question: str
    title: str
    graded: bool
    outcome: str  # one of OUTCOMES
    message: str
    tests: dict[str, int]  # outcome -> how many of its tests had it

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "title": self.title, "graded": self.graded, "outcome": self.outcome,
                "message": self.message, "tests": dict(self.tests)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuestionVerdict:
        return cls(**{key: data[key] for key in ("question", "title", "graded", "outcome", "message", "tests")})


@dataclass
class NotebookResult:
    """One implementation's grade: what the grade report writes and the batch grader collects."""

    implementation: str = ""
    train_seed: int = 0
    torch: str = ""
    sandbox: str = ""
    questions: list[QuestionVerdict] = field(default_factory=list)
    skipped_cells: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)  # epochs ("3", "10") -> test accuracy in %
    notebook: str = ""  # the batch grader's five
    seconds: float | None = None
    error: str = ""
    sha256: str = ""
    fingerprint: str = ""

    @property
    def graded(self) -> int:
        return sum(q.graded for q in self.questions)

    @property
    def graded_passed(self) -> int:
        return sum(q.graded and q.outcome == "passed" for q in self.questions)

    def to_json(self) -> dict[str, Any]:
        head: dict[str, Any] = {"notebook": self.notebook} if self.notebook else {}
        head.update({key: value for key, value in (("sha256", self.sha256), ("fingerprint", self.fingerprint))
                     if value})  # fmt: skip
        if self.error:
            return {**head, "error": self.error}
        if self.seconds is not None:
            head["seconds"] = self.seconds
        return {
            **head,
            "implementation": self.implementation,
            "train_seed": self.train_seed,
            "torch": self.torch,
            "sandbox": self.sandbox,
            "graded_passed": self.graded_passed,
            "graded": self.graded,
            "accuracy": self.accuracy,
            "questions": [q.to_json() for q in self.questions],
            "skipped_cells": self.skipped_cells,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotebookResult:
        return cls(
            implementation=data.get("implementation", ""),
            train_seed=data.get("train_seed", 0),
            torch=data.get("torch", ""),
            sandbox=data.get("sandbox", ""),
            questions=[QuestionVerdict.from_json(q) for q in data.get("questions", [])],
            skipped_cells=data.get("skipped_cells", []),
            accuracy=data.get("accuracy", {}),
            notebook=data.get("notebook", ""),
            seconds=data.get("seconds"),
            error=data.get("error", ""),
            sha256=data.get("sha256", ""),
            fingerprint=data.get("fingerprint", ""),
        )

    def summary(self) -> str:
        """One line: how many graded questions passed, or why there is no grade."""
        if self.error:
            return self.error
        return f"{self.graded_passed} of {self.graded} graded questions passed"


@dataclass
class _Tally:
    """One question's test outcomes, as they arrive."""

    outcomes: list[str] = field(default_factory=list)
    failures: list[tuple[tuple, str]] = field(default_factory=list)  # (position in the file, message)
    skip_reason: str = ""

    @property
    def outcome(self) -> str:
        if "failed" in self.outcomes:
            return "failed"
        return "passed" if "passed" in self.outcomes else "skipped"

    @property
    def message(self) -> str:
        if self.outcome == "failed":
            return min(self.failures)[1]
        return self.skip_reason if self.outcome == "skipped" else ""


class VerdictCollector:
    """Each question's verdict, folded from its tests' reports as they arrive (on the xdist controller too)."""

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}

    def add(self, report: pytest.TestReport) -> None:
        question = dict(report.user_properties).get(QUESTION)
        if question is None or (report.when != "call" and report.passed):
            return
        tally = self._tallies.setdefault(question, _Tally())
        if report.failed:
            tally.outcomes.append("failed")
            tally.failures.append(((report.location[1] or 0, report.nodeid), failure_line(report)))
        elif report.skipped:
            tally.outcomes.append("skipped")
            tally.skip_reason = tally.skip_reason or str(report.longrepr[-1]).removeprefix("Skipped: ")
        else:
            tally.outcomes.append("passed")

    def get(self, question: str) -> QuestionVerdict | None:
        tally = self._tallies.get(question)
        if tally is None:
            return None
        entry = QUESTIONS[question]
        counts = {outcome: tally.outcomes.count(outcome) for outcome in OUTCOMES}
        return QuestionVerdict(question, entry.title, entry.graded, tally.outcome, tally.message, counts)

    def verdicts(self) -> list[QuestionVerdict]:
        """The questions that ran, in the assignment's order."""
        return [verdict for q in QUESTIONS if (verdict := self.get(q)) is not None]


def failure_line(report: pytest.TestReport) -> str:
    """The failure's first line, whole, and where in the student's code it happened."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or ["failed"]
    line = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]  # "Error:\nwhat"
    line = line.removeprefix("AssertionError: ").removeprefix("Failed: ")
    properties = dict(report.user_properties)
    if NOTE in properties:
        line += f"; {properties[NOTE]}"
    if STUDENT_CODE in properties:
        line += f" [{properties[STUDENT_CODE]}]"
    return line
