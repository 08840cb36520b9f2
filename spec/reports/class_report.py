"""What a class got wrong, beside the batch grader's grades.csv: class.md, class.html (self-contained) and
class_*.png (matplotlib).

Per graded question: how many notebooks passed it, and its most common failure messages, grouped by the
message without the place in the student's code (the same mistake in another cell is the same mistake),
with a count. Then the class's test accuracy after 3 and 10 epochs (Q31, Q33) and its grading times.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from spec.harness.contract import QUESTIONS
from spec.harness.text import markdown_cell
from spec.reports.page import STYLE, figure
from spec.reports.verdicts import NotebookResult

COMMON = 5  # failure messages shown per question
WHERE = re.compile(r" \[(?:cell \d+|line \d+).*\]$")  # the place in the student's code, at a message's end


def failure_groups(results: list[NotebookResult]) -> dict[str, Counter[str]]:
    """Per question, its failure messages without the place in the student's code, counted."""
    groups: dict[str, Counter[str]] = {}
    for result in results:
        for verdict in result.questions:
            if verdict.graded and verdict.outcome == "failed":
                groups.setdefault(verdict.question, Counter())[WHERE.sub("", verdict.message)] += 1
    return groups


def rows(results: list[NotebookResult]) -> list[tuple[str, str, int, int]]:
    """(question, title, passed, run) for each graded question some notebook ran, in the assignment's order."""
    graded = [r for r in results if not r.error]
    table = []
    for question, entry in QUESTIONS.items():
        outcomes = [v.outcome for r in graded for v in r.questions if v.question == question and v.graded]
        if outcomes:
            table.append((question, entry.title, outcomes.count("passed"), len(outcomes)))
    return table


def write(results: list[NotebookResult], folder: Path, stem: str = "class") -> tuple[Path, Path]:
    """class.md and class.html (and the plots) in `folder`; the plots are left out, and said so, without matplotlib."""
    plots, missing = _plots(results, folder, stem)
    summary = _summary(results)
    table, groups = rows(results), failure_groups(results)
    markdown = folder / f"{stem}.md"
    markdown.write_text("\n".join(_markdown(summary, table, groups, plots, missing)) + "\n", encoding="utf-8")
    page = folder / f"{stem}.html"
    page.write_text(_html(summary, table, groups, plots, missing, folder), encoding="utf-8")
    return markdown, page


def _summary(results: list[NotebookResult]) -> list[str]:
    graded = [r for r in results if not r.error]
    lines = [f"{len(results)} notebooks, {len(graded)} graded, {len(results) - len(graded)} not graded"]
    versions = sorted({f"torch {r.torch}, training seed {r.train_seed}" for r in graded})
    lines += versions
    if graded:
        full = sum(r.graded_passed == r.graded for r in graded)
        lines.append(f"{full} of {len(graded)} graded notebooks passed every graded question")
    return lines


def _plots(results: list[NotebookResult], folder: Path, stem: str) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        from spec.reports.plots import histogram
    except ImportError:
        return [], ["the plots need matplotlib: pip install 'mnist-lab[report]'"]
    drawn, missing = [], []
    accuracy = {epochs: [r.accuracy[epochs] for r in results if epochs in r.accuracy] for epochs in ("3", "10")}
    if any(accuracy.values()):
        name = f"{stem}_accuracy.png"
        series = {f"after {epochs} epochs ({len(values)})": values for epochs, values in accuracy.items() if values}
        histogram(series, folder / name, "The class's test accuracy (Q31, Q33)", "test accuracy (%)")
        drawn.append((name, "Test accuracy of each notebook's own training, after 3 and after 10 epochs."))
    else:
        missing.append("the accuracy: no notebook reached Q31 or Q33")
    seconds = [r.seconds for r in results if r.seconds is not None]
    if seconds:
        name = f"{stem}_seconds.png"
        histogram({f"notebooks ({len(seconds)})": seconds}, folder / name, "Grading time", "seconds per notebook")
        drawn.append((name, "Wall time of each notebook's grading."))
    return drawn, missing


def _markdown(summary: list[str], table: list[tuple[str, str, int, int]], groups: dict[str, Counter[str]],
              plots: list[tuple[str, str]], missing: list[str]) -> list[str]:  # fmt: skip
    lines = ["# What the class got wrong", "", *(f"- {line}" for line in summary), ""]
    lines += ["| question | title | passed | pass rate |", "|---|---|---|---|"]
    lines += [f"| {q} | {markdown_cell(t)} | {p} of {n} | {100 * p / n:.0f}% |" for q, t, p, n in table]
    for question, _, passed, run in table:
        if question in groups:
            lines += ["", f"## {question}: {run - passed} failed", ""]
            common = groups[question].most_common(COMMON)
            lines += [f"- {count} x {markdown_cell(message)}" for message, count in common]
    lines += ["", "## Plots", ""]
    for file, caption in plots:
        lines += [f"![{caption}]({file})", "", caption, ""]
    lines += [f"- not drawn: {why}" for why in missing]
    return lines


def _html(summary: list[str], table: list[tuple[str, str, int, int]], groups: dict[str, Counter[str]],
          plots: list[tuple[str, str]], missing: list[str], folder: Path) -> str:  # fmt: skip
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>What the class got wrong</title>',
             f"<style>{STYLE}</style></head><body>", "<h1>What the class got wrong</h1>",
             "<ul>" + "".join(f"<li>{e(line)}</li>" for line in summary) + "</ul>",
             "<table><tr><th>question</th><th>title</th><th>passed</th><th>pass rate</th></tr>"]  # fmt: skip
    for q, title, passed, run in table:
        parts.append(f"<tr><td>{e(q)}</td><td>{e(title)}</td><td>{passed} of {run}</td>"
                     f'<td class="rate">{100 * passed / run:.0f}%</td></tr>')  # fmt: skip
    parts.append("</table>")
    for question, _, passed, run in table:
        if question in groups:
            parts.append(f"<h2>{e(question)}: {run - passed} failed</h2><ul>")
            parts += [f'<li><span class="count">{count} x</span> {e(message)}</li>'
                      for message, count in groups[question].most_common(COMMON)]  # fmt: skip
            parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    parts += [figure(folder / file, caption) for file, caption in plots]
    parts += [f"<p>Not drawn: {e(why)}</p>" for why in missing]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
