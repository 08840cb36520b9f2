"""The grade report: each question's verdict, for a course assistant and for course platforms.

A pytest plugin (registered by spec/harness/plugin.py when grading, or with --grade-report PATH). It
folds every test's report into one verdict per question (spec/reports/verdicts.py), prints the table at
the end of the run and, with --grade-report, writes PATH.json (a `NotebookResult`) and PATH.md.

Under xdist each worker sends what of the notebook it did not run (`skipped_cells`) to the controller
when it ends, so the controller never builds the student's notebook itself.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from spec.harness.impl import Implementation
from spec.harness.text import MEASURED, NOT_GRADED, accuracy_key, markdown_cell
from spec.reports.verdicts import NotebookResult, QuestionVerdict, VerdictCollector

_SKIPPED_CELLS = "mnist_lab_skipped_cells"  # the key of xdist's workeroutput
# What Q31 and Q33 measure (their `measure` records' keys), by the epochs trained: the class report's histograms.
ACCURACY = {accuracy_key(epochs): str(epochs) for epochs in (3, 10)}


class GradeReport:
    def __init__(self, config: pytest.Config, impl: Implementation, train_seed: int) -> None:
        self.config, self.impl, self.train_seed = config, impl, train_seed
        path = config.getoption("--grade-report")
        self.path = Path(config.invocation_params.dir, path) if path else None
        self.collector = VerdictCollector()
        self.accuracy: dict[str, float] = {}
        self.not_graded = ""  # the grader's own failure, from the first test that met it
        self.from_workers: list[dict[str, Any]] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add(report)
        for key, record in report.user_properties:
            if key == NOT_GRADED and not self.not_graded:
                self.not_graded = str(record)
            epochs = ACCURACY.get(record.get("key")) if key == MEASURED and isinstance(record, dict) else None
            if epochs and record.get("device") == "cpu" and isinstance(record.get("value"), int | float):
                self.accuracy[epochs] = float(record["value"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            self.config.workeroutput[_SKIPPED_CELLS] = self.impl.skipped_cells()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist's controller: a worker is done; keep the first worker's account of the notebook."""
        cells = getattr(node, "workeroutput", {}).get(_SKIPPED_CELLS)
        if cells is not None and self.from_workers is None:
            self.from_workers = cells

    def result(self) -> NotebookResult:
        distributed = self.config.pluginmanager.getplugin("dsession") is not None
        if self.not_graded:  # no verdict stands: the student's code was never run
            return NotebookResult(implementation=self.config.getoption("--impl") or self.impl.name,
                                  torch=torch.__version__, error=self.not_graded)  # fmt: skip
        skipped = self.from_workers if distributed else self.impl.skipped_cells()
        return NotebookResult(
            implementation=self.config.getoption("--impl") or self.impl.name,
            train_seed=self.train_seed,
            torch=torch.__version__,
            sandbox=self.impl.containment,
            questions=self.collector.verdicts(),
            skipped_cells=skipped or [],
            accuracy=dict(sorted(self.accuracy.items(), key=lambda item: int(item[0]))),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        result = self.result()
        lines = markdown(result)
        terminalreporter.section("grades")
        for line in lines:
            terminalreporter.line(line)
        if self.path:
            stem = self.path.with_suffix("") if self.path.suffix in (".json", ".md") else self.path
            stem.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{stem}.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
            Path(f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
            terminalreporter.line(f"grade report: {stem}.json, {stem}.md")


def markdown(result: NotebookResult) -> list[str]:
    """The grade report's Markdown (PATH.md, and the table at the end of the run), a line each."""
    lines = [f"{result.implementation}: {result.summary()} (torch {result.torch}, training seed {result.train_seed})",
             ""]  # fmt: skip
    if result.error:
        return lines[:1]
    if result.sandbox:
        lines += [f"Its code ran {result.sandbox}.", ""]
    lines += [
        "| question | title | graded | outcome | message |",
        "|---|---|---|---|---|",
        *(_row(q) for q in result.questions),
    ]
    if result.skipped_cells:
        lines += ["", "Not run (grading runs the imports, the definitions and the assignments they need):", ""]
        lines += _skipped_lines(result.skipped_cells)
    return lines


def _row(verdict: QuestionVerdict) -> str:
    more = verdict.tests.get("failed", 0) - 1
    message = markdown_cell(verdict.message) + (f" (and {more} more failed test{'s' * (more > 1)})" if more > 0 else "")
    graded = "yes" if verdict.graded else "no"
    return f"| {verdict.question} | {verdict.title} | {graded} | {verdict.outcome} | {message} |"


def _skipped_lines(skipped: list[dict[str, Any]]) -> list[str]:
    """A line per cell and reason: where, the first statement's code, how many more."""
    lines = []
    for (_, reason), group in itertools.groupby(skipped, lambda s: (s["cell"], s["reason"])):
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
