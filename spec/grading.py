"""The grade report: each question's verdict, for a course assistant and for course platforms.

A pytest plugin (registered by conftest.py when grading, or with --grade-report PATH). It reads every
test's report as it arrives (on the xdist controller too), folds them into one verdict per question,
prints the table at the end of the run and, with --grade-report, writes PATH.json and PATH.md:

    {"implementation": "their.ipynb", "train_seed": 0, "torch": "2.13.0",
     "graded_passed": 11, "graded": 13,
     "questions": [{"question": "Q25", "title": ..., "graded": true,
                    "outcome": "passed" | "failed" | "skipped", "message": first failure line, whole,
                    "tests": {"passed": 3, "failed": 1, "skipped": 1}}],
     "skipped_cells": [{"cell": 14, "lines": [1, 3], "where": ..., "code": ..., "reason": ...}]}

A question fails if any of its tests failed or errored, is skipped if all were skipped, and passes
otherwise. Its message is the first line of the failure of its first failing test (in file order),
with where in the student's code it happened.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from spec.contract import QUESTIONS, question_of
from spec.impl import implementation_name, load_implementation


@dataclass
class _Verdict:
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

    @property
    def counts(self) -> dict[str, int]:
        return {outcome: self.outcomes.count(outcome) for outcome in ("passed", "failed", "skipped")}


class Verdicts(dict[str, _Verdict]):
    """Each question's verdict, folded from its tests' reports as they arrive."""

    def add(self, report: pytest.TestReport) -> None:
        question = question_of(report.nodeid.split("::")[0])
        if question is None or (report.when != "call" and report.passed):
            return
        verdict = self.setdefault(question, _Verdict())
        if report.failed:
            verdict.outcomes.append("failed")
            verdict.failures.append(((report.location[1] or 0, report.nodeid), failure_line(report)))
        elif report.skipped:
            verdict.outcomes.append("skipped")
            verdict.skip_reason = verdict.skip_reason or str(report.longrepr[-1]).removeprefix("Skipped: ")
        else:
            verdict.outcomes.append("passed")


def failure_line(report: pytest.TestReport) -> str:
    """The failure's first line, whole, and where in the student's code it happened."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or ["failed"]
    line = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]  # "Error:\nwhat"
    line = line.removeprefix("AssertionError: ").removeprefix("Failed: ")
    properties = dict(report.user_properties)
    if "note" in properties:
        line += f"; {properties['note']}"
    if "student_code" in properties:
        line += f" [{properties['student_code']}]"
    return line


class GradeReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        path = config.getoption("--grade-report")
        self.path = Path(config.invocation_params.dir, path) if path else None
        self.verdicts = Verdicts()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.verdicts.add(report)

    def result(self) -> dict[str, Any]:
        questions = [
            {
                "question": q,
                "title": QUESTIONS[q].title,
                "graded": QUESTIONS[q].graded,
                "outcome": self.verdicts[q].outcome,
                "message": self.verdicts[q].message,
                "tests": self.verdicts[q].counts,
            }
            for q in QUESTIONS
            if q in self.verdicts
        ]
        graded = [q for q in questions if q["graded"]]
        return {
            "implementation": self.config.getoption("--impl") or implementation_name(),
            "train_seed": self.config.getoption("--train-seed"),
            "torch": torch.__version__,
            "graded_passed": sum(q["outcome"] == "passed" for q in graded),
            "graded": len(graded),
            "questions": questions,
            "skipped_cells": self.skipped_cells(),
        }

    def skipped_cells(self) -> list[dict[str, Any]]:
        """What of the notebook was not run, and why; the statements that raised while it was imported too.
        (Under xdist the controller builds the module here, as each worker did.)"""
        built = load_implementation().notebook
        if built is None:
            return []
        entries = sorted([*built.plan.skipped, *built.failed], key=lambda entry: (entry.cell, entry.lines))
        return [entry.as_dict() for entry in entries]

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        result = self.result()
        terminalreporter.section("grades")
        for line in markdown_lines(result):
            terminalreporter.line(line)
        if self.path:
            stem = self.path.with_suffix("") if self.path.suffix in (".json", ".md") else self.path
            stem.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            Path(f"{stem}.md").write_text("\n".join(markdown_lines(result)) + "\n", encoding="utf-8")
            terminalreporter.line(f"grade report: {stem}.json, {stem}.md")


def markdown_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['implementation']}: {result['graded_passed']} of {result['graded']} graded questions passed "
        f"(torch {result['torch']}, training seed {result['train_seed']})",
        "",
        "| question | title | graded | outcome | message |",
        "|---|---|---|---|---|",
    ]
    for q in result["questions"]:
        more = q["tests"]["failed"] - 1
        message = q["message"].replace("|", "\\|") + (
            f" (and {more} more failed test{'s' * (more > 1)})" if more > 0 else ""
        )
        lines.append(
            f"| {q['question']} | {q['title']} | {'yes' if q['graded'] else 'no'} | {q['outcome']} | {message} |"
        )
    if result["skipped_cells"]:
        lines += ["", "Not run (grading runs the imports, the definitions and the assignments they need):", ""]
        for (_, reason), group in itertools.groupby(result["skipped_cells"], lambda s: (s["cell"], s["reason"])):
            group = list(group)
            cell = group[0]["where"].rsplit("line", 1)[0]  # "cell 4 (In [2]), " or "" for a script
            more = f" and {len(group) - 1} more" if len(group) > 1 else ""
            where = f"{cell}line{'s' * (len(group) > 1)} {_ranges([s['lines'][0] for s in group])}"
            lines.append(f"- {where}: `{group[0]['code']}`{more}: {reason}")
    return lines


def _ranges(numbers: list[int]) -> str:
    """[2, 3, 4, 7] -> '2-4, 7'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)
