"""The class report (spec/reports/class_report.py): pass rates, the common failures grouped without the
place in each student's code, and the class's accuracy and grading times drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.reports import class_report
from spec.reports.verdicts import NotebookResult, QuestionVerdict

pytest.importorskip("matplotlib")


def notebook(name: str, q21: str, message: str = "", accuracy: dict[str, float] | None = None) -> NotebookResult:
    verdicts = [QuestionVerdict("Q21", "Normalising", True, q21, message, {q21: 1}),
                QuestionVerdict("Q26", "LeNet", True, "passed", "", {"passed": 1})]  # fmt: skip
    return NotebookResult(notebook=name, torch="2.13.0", questions=verdicts, accuracy=accuracy or {}, seconds=40.0)


CLASS = [
    notebook("a.ipynb", "passed", accuracy={"3": 93.5, "10": 97.7}),
    notebook("b.ipynb", "failed", "pixel value 0 became 0, not -1 [cell 12 (In [28]), line 3, in normalize]",
             accuracy={"3": 92.0, "10": 97.1}),
    notebook("c.ipynb", "failed", "pixel value 0 became 0, not -1 [cell 9 (In [7]), line 2, in normalize]"),
    notebook("d.py", "failed", "pixel value 0 became 0, not -1 [line 4, in normalize_MNIST_images]"),
    NotebookResult(notebook="e.ipynb", error="not graded: the spec ran past 3600 s"),
]


def test_the_same_mistake_in_other_cells_is_one_group_with_its_count() -> None:
    groups = class_report.failure_groups(CLASS)
    assert groups["Q21"].most_common() == [("pixel value 0 became 0, not -1", 3)], groups
    assert "Q26" not in groups, "a question nobody failed has failure groups"


def test_pass_rates_count_the_graded_notebooks() -> None:
    assert class_report.rows(CLASS) == [("Q21", "Normalising the images to [-1, 1]", 1, 4),
                                        ("Q26", "The LeNet class", 4, 4)], class_report.rows(CLASS)  # fmt: skip


def test_the_report_is_written_with_its_plots_inline(tmp_path: Path) -> None:
    markdown, page = class_report.write(CLASS, tmp_path)
    text = markdown.read_text()
    assert "| Q21 | Normalising the images to [-1, 1] | 1 of 4 | 25% |" in text, text
    assert "- 3 x pixel value 0 became 0, not -1" in text, text
    assert "5 notebooks, 4 graded, 1 not graded" in text, text
    for png in ("class_accuracy.png", "class_seconds.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG"), f"{png} is not a PNG"
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2, "the HTML does not carry both plots inline"
    for outside in ('src="http', "href="):
        assert outside not in html, f"the HTML refers to something outside it ({outside})"
