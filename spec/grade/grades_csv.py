"""The batch's CSV: a row per notebook, its points by the rubric, each graded question's outcome, and what
reproduces the grade (its SHA-256, torch, the training seed)."""

from __future__ import annotations

import csv
import io

from spec.grade.rubric import Rubric
from spec.reports.verdicts import NotebookResult


def csv_text(results: list[NotebookResult], rubric: Rubric) -> str:
    """A row per notebook: its points of the total (the rubric's), the graded questions passed and run, each
    graded question's outcome, the seconds it took, and what reproduces it: its SHA-256, torch, the seed."""
    questions = list(dict.fromkeys(q.question for r in results for q in r.questions if q.graded))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "points", "total", "passed", "graded", *questions, "seconds", "sha256", "torch",
                     "train_seed", "error"])  # fmt: skip
    for r in results:
        outcomes = {q.question: q.outcome for q in r.questions}
        if r.error:
            row = [r.notebook, 0, f"{rubric.total:g}", "", "", *([""] * len(questions)), r.seconds or "", r.sha256,
                   "", "", r.error]  # fmt: skip
        else:
            points = sum(rubric.points_of(q.question) for q in r.questions if q.graded and q.outcome == "passed")
            row = [r.notebook, f"{points:g}", f"{rubric.total:g}", r.graded_passed, r.graded,
                   *(outcomes.get(q, "") for q in questions), r.seconds, r.sha256, r.torch, r.train_seed,
                   ""]  # fmt: skip
        writer.writerow(row)
    return buffer.getvalue()
