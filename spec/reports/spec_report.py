"""`pytest spec --report DIR`: what the assignment printed beside what this run measured, with plots.

A pytest plugin (registered by spec/harness/plugin.py with --report). It reads every test's report as
it arrives (on the xdist controller too): the verdicts, folded per question as grading does
(spec/reports/verdicts.py), and what the tests recorded with the `measure` fixture
(spec/harness/measure.py). At the end it writes

    DIR/report.md     a row per question: the question, what the assignment printed, what was
                      measured here (value and device), the verdict; then the plots
    DIR/report.html   the same, self-contained: its images inline, no external reference
    DIR/report.json   the same rows, and every record the tests made, for other tools
    DIR/*.png         the plots (spec/reports/plots.py): loss.png, accuracy.png, digits.png, and with
                      --report-sweep PATH sweep.png, with --report-benchmarks PATH benchmarks.png

A plot whose data no test recorded (a run of a few questions) is left out, and the report says so.
"""

from __future__ import annotations

import html
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from spec.harness.contract import QUESTIONS
from spec.harness.impl import Implementation
from spec.harness.text import MEASURED, QUESTION, SERIES, markdown_cell
from spec.reports.page import STYLE, figure
from spec.reports.verdicts import VerdictCollector

INSTALL = "pip install 'mnist-lab[report]'"


@dataclass
class Plot:
    file: str
    caption: str


def _load_json(option: str, path: str | None, key: str) -> dict[str, Any] | None:
    """The JSON file an option names, checked for the key the plot reads; a one-line UsageError if not."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise pytest.UsageError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise pytest.UsageError(f"{option} {path}: not a JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise pytest.UsageError(f"{option} {path}: no {key!r} list in it")
    return data


def _number(value: Any) -> Any:
    """Floats to 4 significant digits, inside lists and dicts too."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    return value


def _shown(value: Any, unit: str) -> str:
    value = _number(value)
    if isinstance(value, list) and len(value) > 6:
        text = f"[{', '.join(map(str, value[:3]))}, ... ({len(value)} values)]"
    else:
        text = str(value)
    return f"{text}{'' if not unit else unit if unit == '%' else ' ' + unit}"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise pytest.UsageError(f"--report draws its plots with matplotlib, not installed here: {INSTALL}") from None


class SpecReport:
    def __init__(
        self,
        out: Path,
        impl: Implementation,
        *,
        sweep: dict[str, Any] | None = None,
        benchmarks: dict[str, Any] | None = None,
        train_seed: int = 0,
        worker: bool = False,
    ) -> None:
        self.dir, self.impl, self.sweep, self.benchmarks = out, impl, sweep, benchmarks
        self.train_seed, self.worker = train_seed, worker
        self.collector = VerdictCollector()
        self.measured: dict[str, list[dict[str, Any]]] = {}  # question -> records
        self.series: list[dict[str, Any]] = []

    @classmethod
    def from_config(cls, config: pytest.Config, impl: Implementation) -> SpecReport:
        """The plugin for this run's options, checked before any test runs (one-line usage errors)."""
        out = config.getoption("--report")
        if out is None:
            raise pytest.UsageError("--report-sweep and --report-benchmarks go with --report DIR")
        require_matplotlib()
        folder = Path(config.invocation_params.dir, out)
        if folder.exists() and not folder.is_dir():
            raise pytest.UsageError(f"--report {out}: is a file, not a folder")
        return cls(
            folder,
            impl,
            sweep=_load_json("--report-sweep", config.getoption("--report-sweep"), "runs"),
            benchmarks=_load_json("--report-benchmarks", config.getoption("--report-benchmarks"), "benchmarks"),
            train_seed=config.getoption("--train-seed"),
            worker=hasattr(config, "workerinput"),
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add(report)
        if report.when != "teardown":  # its user_properties hold everything the test recorded
            return
        question = dict(report.user_properties).get(QUESTION)
        for key, record in report.user_properties:
            if key == MEASURED and question is not None:
                # in file order, whatever order xdist's workers finish in
                place = (report.location[1] or 0, report.nodeid, len(self.measured.get(question, [])))
                self.measured.setdefault(question, []).append({**record, "place": place})
            elif key == SERIES:
                self.series.append({**record, "question": question})

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker:
            return
        markdown, page = self.write()
        terminalreporter.line(f"report: {markdown}, {page}")

    # --- writing -------------------------------------------------------------------------------------

    def header(self) -> list[str]:
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        graded = ", graded as a student's notebook" if self.impl.grading else ""
        return [
            f"implementation: {self.impl.name}{graded}",
            f"torch {torch.__version__}, Python {platform.python_version()}, CUDA device: {cuda}, "
            f"training seed {self.train_seed}",
        ]

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for q, question in QUESTIONS.items():
            verdict = self.collector.get(q)
            records = sorted(self.measured.get(q, []), key=lambda r: r["place"])
            texts = [f"{r['name']} = {_shown(r['value'], r['unit'])} ({r['device']})" for r in records]
            measured = "; ".join(dict.fromkeys(texts))  # each once: parametrised tests often measure the same
            rows.append(
                {
                    "question": f"{q}: {question.title}",
                    "printed": question.printed,
                    "measured": measured or "-",
                    "verdict": verdict.outcome if verdict else "not run",
                    "message": verdict.message if verdict else "",
                }
            )
        return rows

    def plots(self) -> tuple[list[Plot], list[str]]:
        """Draw each plot whose data is there; the captions of those drawn, and what was left out."""
        from spec.reports import plots

        self.dir.mkdir(parents=True, exist_ok=True)
        label = "this notebook" if self.impl.grading else self.impl.name
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for s in self.series:
            by_kind.setdefault(s["kind"], []).append({**s, "run": label if s.get("question") else "mnist_lab"})
        drawn, missing = [], []
        wanted = [
            ("loss", "loss.png", "The printed loss of each training run the tests made (Q29-Q33, and the package's "
             "default recipe), against the assignment's printed 3-epoch log.", plots.loss),
            ("accuracy", "accuracy.png", "Test accuracy after each epoch (Q31-Q33, and the default recipe), with the "
             "assignment's printed 94.41% (3 epochs) and 98.17% (10 epochs).", plots.accuracy),
            ("digit", "digits.png", "Q23: image 42 of each split, with its label.", plots.digits),
        ]  # fmt: skip
        for kind, file, caption, draw in wanted:
            if by_kind.get(kind):
                draw(by_kind[kind], self.dir / file)
                drawn.append(Plot(file, caption))
            else:
                missing.append(f"{file}: no test in this run recorded its data")
        if self.sweep is not None:
            plots.sweep(self.sweep, self.dir / "sweep.png")
            drawn.append(Plot("sweep.png", "The seed sweep given with --report-sweep: test accuracy over seeds."))
        if self.benchmarks is not None:
            plots.benchmarks(self.benchmarks, self.dir / "benchmarks.png")
            drawn.append(Plot("benchmarks.png", "The benchmarks given with --report-benchmarks: an epoch per device "
                              "and engine (hatched: the printed loop), and images per second."))  # fmt: skip
        return drawn, missing

    def write(self) -> tuple[Path, Path]:
        rows = self.rows()
        drawn, missing = self.plots()
        markdown = self.dir / "report.md"
        page = self.dir / "report.html"
        header = self.header()
        markdown.write_text("\n".join(markdown_lines(header, rows, drawn, missing)) + "\n", encoding="utf-8")
        series = sorted(self.series, key=lambda r: json.dumps(r, sort_keys=True))  # not in the workers' order
        record = {"header": header, "questions": rows, "series": series}
        (self.dir / "report.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        page.write_text(html_page(header, rows, drawn, missing, self.dir), encoding="utf-8")
        return markdown, page


def markdown_lines(header: list[str], rows: list[dict[str, str]], drawn: list[Plot], missing: list[str]) -> list[str]:
    lines = ["# mnist-lab: the assignment against this run", "", *(f"- {line}" for line in header), ""]
    lines += ["| question | the assignment printed | measured here | verdict |", "|---|---|---|---|"]
    for r in rows:
        verdict = r["verdict"] + (f": {r['message']}" if r["message"] else "")
        cells = (r["question"], r["printed"], r["measured"], verdict)
        lines.append("| " + " | ".join(markdown_cell(text) for text in cells) + " |")
    lines += ["", "## Plots", ""]
    for plot in drawn:
        lines += [f"![{plot.caption}]({plot.file})", "", plot.caption, ""]
    lines += [f"- not drawn: {why}" for why in missing]
    return lines


def html_page(
    header: list[str], rows: list[dict[str, str]], drawn: list[Plot], missing: list[str], folder: Path
) -> str:
    """The report as one HTML file: the plots inline as data: URIs, the style inline, no external reference."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>mnist-lab report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>mnist-lab: the assignment against this run</h1>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in header) + "</ul>",
        "<table><tr><th>question</th><th>the assignment printed</th><th>measured here</th><th>verdict</th></tr>",
    ]
    for r in rows:
        message = f"<br>{e(r['message'])}" if r["message"] else ""
        parts.append(
            f"<tr><td>{e(r['question'])}</td><td>{e(r['printed'])}</td><td>{e(r['measured'])}</td>"
            f'<td class="{r["verdict"].replace(" ", "-")}">{e(r["verdict"])}{message}</td></tr>'
        )
    parts += ["</table>", "<h2>Plots</h2>"]
    parts += [figure(folder / plot.file, plot.caption) for plot in drawn]
    parts += [f"<p>Not drawn: {e(why)}</p>" for why in missing]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
