"""`pytest spec --report DIR` (spec/reports/spec_report.py): its structure, checked without a browser.

Every question has a row; every image the report shows decodes and is not blank; the HTML page
stands alone (its images inline, nothing fetched from anywhere). The first tests feed the plugin
reports as pytest would, with every kind of record; the last ones run pytest itself, under xdist,
with and without matplotlib.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spec.harness import printed
from spec.harness.contract import QUESTIONS
from spec.harness.impl import PackageImplementation
from spec.harness.text import MEASURED, QUESTION, SERIES
from spec.package_tests.support import REPO

pytest.importorskip("matplotlib", reason="the report extra (pip install 'mnist-lab[report]') draws the plots")

from matplotlib.image import imread

from spec.reports.spec_report import INSTALL, SpecReport, _load_json

MODULES = {  # a test module of each question, for the node ids of the fake reports
    "Q1": "questions/test_q01_uninitialized_tensor.py", "Q23": "questions/test_q23_show.py",
    "Q29-Q30": "questions/test_q29_q30_backprop_deep.py", "Q31": "questions/test_q31_three_epochs_accuracy.py",
    "Q33": "questions/test_q33_ten_epochs_accuracy.py",
}  # fmt: skip
QUESTION_OF = {module: q for q, module in MODULES.items()}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def fake_report(module: str, name: str, when: str, outcome: str, properties: list | None = None) -> pytest.TestReport:
    """A report as pytest makes one, with the question the plugin tags a question module's tests with."""
    longrepr = None if outcome == "passed" else "AssertionError: 9.7% on the test set"
    question = [(QUESTION, QUESTION_OF[module])] if module in QUESTION_OF else []
    return pytest.TestReport(
        f"spec/{module}::{name}", (f"spec/{module}", 1, name), {}, outcome, longrepr, when,
        user_properties=[*question, *(properties or [])],
    )  # fmt: skip


def run_of(plugin: SpecReport, module: str, name: str, outcome: str, properties: list) -> None:
    """One test's three reports, as pytest sends them; the records ride on each."""
    for when in ("setup", "call", "teardown"):
        plugin.pytest_runtest_logreport(fake_report(module, name, when, outcome if when == "call" else "passed",
                                                    properties))  # fmt: skip


def loss_log(epochs: int, scale: float) -> list[list[float]]:
    return [
        [e, k, scale * 2.3 / (1 + (e - 1) * 6 + k / 100)] for e in range(1, epochs + 1) for k in range(100, 601, 100)
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SpecReport]:
    """A report with a row of every kind: passed with values, failed, not run; every plot drawn."""
    sweep = {"recipe": "default", "epochs": 3, "device": "cpu", "runs": [{"seed": s, "test_accuracy": 98 + s / 50}
                                                                          for s in range(16)]}  # fmt: skip
    bench = {"benchmarks": [
        {"name": f"{name}[{device}]", "stats": {"median": seconds},
         "extra_info": {"device": device, "images_per_second": 6e4 / seconds, "plotted_as": engine}}
        for name, engine, device, seconds in (
            ("test_epoch_plain_loop", "printed loop", "cpu", 1.6), ("test_epoch_fast_path", "train()", "cpu", 1.1),
            ("test_epoch_plain_loop", "printed loop", "cuda", 1.2), ("test_epoch_fast_path", "train()", "cuda", 0.2),
        )
    ]}  # fmt: skip
    plugin = SpecReport(tmp_path_factory.mktemp("report"), PackageImplementation(), sweep=sweep, benchmarks=bench)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255
    run_of(plugin, MODULES["Q1"], "test_a", "passed", [(MEASURED, {"name": "shape", "value": [5, 3], "device": "cpu",
                                                                    "unit": ""})])  # fmt: skip
    run_of(plugin, MODULES["Q23"], "test_b", "passed", [
        (SERIES, {"kind": "digit", "device": "cpu", "split": split, "index": 42, "label": label,
                  "pixels": digit.tolist()}) for split, label in (("training", 7), ("testing", 4))
    ])  # fmt: skip
    for device in ("cpu", "cuda"):
        run_of(plugin, MODULES["Q33"], f"test_c[{device}]", "failed" if device == "cuda" else "passed", [
            (MEASURED, {"name": "accuracy", "value": 97.5, "device": device, "unit": "%"}),
            (SERIES, {"kind": "loss", "device": device, "recipe": "assignment", "epochs": 10,
                      "points": loss_log(10, 1.0)}),
            (SERIES, {"kind": "accuracy", "device": device, "recipe": "assignment", "epochs": 10,
                      "points": [[e, 90 + e * 0.8] for e in range(1, 11)]}),
        ])  # fmt: skip
    run_of(plugin, "package_tests/test_training.py", "test_d[cpu-3]", "passed", [
        (SERIES, {"kind": "loss", "device": "cpu", "recipe": "default", "epochs": 3, "points": loss_log(3, 0.5)}),
        (SERIES, {"kind": "accuracy", "device": "cpu", "recipe": "default", "epochs": 3,
                  "points": [[1, 97.9], [2, 98.6], [3, 98.8]]}),
    ])  # fmt: skip
    plugin.write()
    return plugin.dir, plugin


def rows_of(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| Q"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].split(":")[0]] = cells
    return rows


def assert_decodes(path: Path) -> None:
    image = imread(path)
    assert image.ndim == 3, f"{path.name} is not an RGB(A) image: shape {image.shape}"
    assert min(image.shape[:2]) >= 100, f"{path.name} is {image.shape[1]}x{image.shape[0]} pixels: too small to read"
    assert float(image[..., :3].std()) > 0.01, f"{path.name} is blank: one colour everywhere"


def test_every_question_has_a_row_with_printed_measured_and_verdict(written: tuple[Path, SpecReport]) -> None:
    out, _ = written
    rows = rows_of((out / "report.md").read_text())
    assert list(rows) == list(QUESTIONS), f"rows for {list(rows)}, not for every question {list(QUESTIONS)}"
    for q, cells in rows.items():
        assert len(cells) == 4, f"{q}'s row has {len(cells)} cells, not 4: {cells}"
        assert cells[1], f"{q}: the printed column is empty"
        assert cells[1] == QUESTIONS[q].printed, f"{q}: printed column {cells[1]!r}"
    assert rows["Q1"][2:] == ["shape = [5, 3] (cpu)", "passed"], rows["Q1"]
    assert rows["Q33"][2] == "accuracy = 97.5% (cpu); accuracy = 97.5% (cuda)", rows["Q33"]
    assert rows["Q33"][3].startswith("failed: 9.7% on the test set"), rows["Q33"]
    assert rows["Q2"][2:] == ["-", "not run"], rows["Q2"]


def test_every_plot_is_drawn_and_decodes(written: tuple[Path, SpecReport]) -> None:
    out, _ = written
    shown = IMAGE.findall((out / "report.md").read_text())
    assert shown == ["loss.png", "accuracy.png", "digits.png", "sweep.png", "benchmarks.png"], f"plots: {shown}"
    for name in shown:
        assert_decodes(out / name)


def test_the_html_page_stands_alone(written: tuple[Path, SpecReport]) -> None:
    out, _ = written
    page = (out / "report.html").read_text()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    outside = [r[:40] for r in references if not r.startswith("data:image/png;base64,")]
    assert not outside, f"references that are not inline images: {outside}"
    for way_out in ("<script", "<link", "@import", "url(", "http://", "https://"):
        assert way_out not in page, f"the page reaches outside itself: {way_out!r}"
    assert page.count("<img ") == 5, f"{page.count('<img ')} images inline, not the 5 plots"
    assert page.count("<tr>") == len(QUESTIONS) + 1, "the HTML table has not one row per question"


def test_plots_without_data_are_named_as_not_drawn(tmp_path: Path) -> None:
    plugin = SpecReport(tmp_path, PackageImplementation())
    run_of(plugin, MODULES["Q1"], "test_a", "passed", [])
    plugin.write()
    text = (tmp_path / "report.md").read_text()
    assert not IMAGE.findall(text), "a plot was drawn without data"
    for name in ("loss.png", "accuracy.png", "digits.png"):
        assert f"not drawn: {name}: no test in this run recorded its data" in text, f"{name} is not accounted for"


def test_the_printed_figures_are_what_the_plots_mark() -> None:
    assert printed.PRINTED_ACCURACY == {3: 94.41, 10: 98.17}, "the accuracy plot marks other figures than Q31's, Q33's"
    assert printed.PRINTED_LOSS_3_EPOCHS[0][2] == 2.301, "the loss plot's printed log is not the assignment's"


def pytest_in_the_repo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_run_under_xdist_reports_what_its_tests_measured(tmp_path: Path) -> None:
    """Two questions on two workers: the records travel from the workers to the controller's report."""
    out = tmp_path / "report"
    proc = pytest_in_the_repo(
        "spec/questions/test_q23_show.py", "spec/questions/test_q27_parameters.py", "-n", "2", "--report", str(out)
    )
    assert proc.returncode == 0, f"pytest exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    assert f"report: {out / 'report.md'}, {out / 'report.html'}" in proc.stdout, proc.stdout[-1000:]
    rows = rows_of((out / "report.md").read_text())
    assert rows["Q23"][2:] == ["testing label 42 = 4 (cpu); training label 42 = 7 (cpu)", "passed"], rows["Q23"]
    assert rows["Q27"][2:] == ["parameters = 44426 (cpu)", "passed"], rows["Q27"]
    assert IMAGE.findall((out / "report.md").read_text()) == ["digits.png"]
    assert_decodes(out / "digits.png")


def test_without_matplotlib_report_says_in_one_line_what_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked by this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    proc = pytest_in_the_repo(
        "spec/questions/test_q27_parameters.py", "-p", "no:xdist", "--report", str(tmp_path / "r"), env=env
    )
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 4, f"exit {proc.returncode}, not pytest's usage error (4):\n{proc.stderr}"
    assert errors == [f"ERROR: --report draws its plots with matplotlib, not installed here: {INSTALL}"], errors
    assert not (tmp_path / "r").exists(), "a report folder was made though the run could not draw it"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not a JSON file"),
        (json.dumps({"runs": []}), "no 'benchmarks' list in it"),
    ],
)
def test_a_bad_plot_input_is_a_one_line_usage_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(pytest.UsageError) as raised:
        _load_json("--report-benchmarks", str(path), "benchmarks")
    lines = str(raised.value).splitlines()
    assert len(lines) == 1, f"the usage error is {len(lines)} lines: {raised.value}"
    assert lines[0].startswith(f"--report-benchmarks {path}: {message}"), lines[0]
