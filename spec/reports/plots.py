"""The report's plots, drawn with matplotlib (the `report` extra) into PNG files.

One look for one thing on every plot: a colour per device (COLOURS), a line style per recipe
(LINES), and black for what the assignment printed. Each function takes the plain records the
tests made (spec/harness/measure.py) and writes one PNG; none touches pyplot's global state.

Series records ("kind" and "device" in each):
- "loss": recipe, epochs, points [[epoch, minibatch, mean loss], ...], the printed log's rows;
- "accuracy": recipe, epochs, points [[epoch, test accuracy in %], ...];
- "digit": split, index, label, pixels (28 rows of 28 values).
The report adds "run", what trained: the implementation under test, or mnist_lab's own recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spec.harness import printed

COLOURS = {"printed": "black", "cpu": "#1f77b4", "cuda": "#d62728"}
LINES = {"assignment": "-", "default": "--"}
RECIPE_NAMES = {"assignment": "printed recipe", "default": "default recipe"}
FLOOR = 85.0  # the accuracy plot's lowest percent: the range where runs differ
WIDTH, HEIGHT, DPI = 9.5, 4.2, 110  # inches and dots per inch: 1045 x 462 pixels, shown at that size
FONT = 10


def _figure(width: float = WIDTH, height: float = HEIGHT) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(True, alpha=0.3)


def _legend_beside(ax: Axes) -> None:
    """The legend right of the axes, where no line runs under it."""
    ax.legend(fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def _unique(series: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (recipe, device, epochs, run): several tests record the run they share."""
    seen: dict[tuple, dict[str, Any]] = {}
    for s in series:
        seen.setdefault((s.get("recipe"), s["device"], s.get("epochs"), s.get("run")), s)
    return sorted(seen.values(), key=lambda s: (s.get("recipe", ""), s["device"], s.get("epochs", 0)))


def _weight(s: dict[str, Any]) -> dict[str, float]:
    """Shorter runs thinner and lighter: a 3-epoch run is often the first part of a 10-epoch one."""
    return {"lw": 1.8, "alpha": 1.0} if (s.get("epochs") or 0) >= 10 else {"lw": 1.1, "alpha": 0.6}


def _run_label(s: dict[str, Any]) -> str:
    recipe = RECIPE_NAMES.get(s.get("recipe"), s.get("recipe"))
    return f"{s.get('run', 'measured')}: {recipe}, {s.get('epochs')} epochs, {s['device']}"


def loss(series: Sequence[dict[str, Any]], path: Path) -> Path:
    """The printed losses of each run against epochs, with the assignment's own 3-epoch log."""
    figure = _figure()
    ax = figure.add_subplot()
    for s in _unique(series):
        per_epoch = max(k for _, k, _ in s["points"])
        x = [epoch - 1 + k / per_epoch for epoch, k, _ in s["points"]]
        y = [value for _, _, value in s["points"]]
        ax.plot(x, y, LINES.get(s.get("recipe"), "-"), color=COLOURS[s["device"]], label=_run_label(s), **_weight(s))
    shown = printed.PRINTED_LOSS_3_EPOCHS
    ax.plot(
        [epoch - 1 + k / 600 for epoch, k, _ in shown], [value for _, _, value in shown], "o", ms=4,
        color=COLOURS["printed"], label="the assignment's printed log (CPU)",
    )  # fmt: skip
    ax.set_yscale("log")
    _style(ax, "Training loss, printed every 100 minibatches", "epoch", "mean loss (nats, log scale)")
    _legend_beside(ax)
    return _save(figure, path)


def accuracy(series: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test accuracy after each epoch, with the assignment's 94.41% and 98.17% marked. The axis starts
    at FLOOR: an epoch below it (the printed recipe's first, near 40%) sits on the floor, its value written."""
    figure = _figure()
    ax = figure.add_subplot()
    for s in _unique(series):
        x = [epoch for epoch, _ in s["points"]]
        y = [value for _, value in s["points"]]
        colour = COLOURS[s["device"]]
        shown = [max(value, FLOOR + 0.2) for value in y]
        ax.plot(x, shown, LINES.get(s.get("recipe"), "-"), marker=".", color=colour, label=_run_label(s), **_weight(s))
        for epoch, value in zip(x, y, strict=True):
            if value < FLOOR:
                ax.plot([epoch], [FLOOR + 0.2], "v", color=colour, ms=7)
                ax.annotate(f"{value:.1f}%", (epoch, FLOOR + 0.2), textcoords="offset points", xytext=(9, -3),
                            fontsize=FONT - 1, color=colour)  # fmt: skip
    for epochs, value in printed.PRINTED_ACCURACY.items():
        ax.plot([epochs], [value], "*", ms=13, color=COLOURS["printed"], zorder=5)
        ax.annotate(f"printed {value}%", (epochs, value), textcoords="offset points", xytext=(-10, 0), ha="right",
                    va="center", fontsize=FONT - 1, fontweight="bold")  # fmt: skip
    ax.plot([], [], "*", ms=10, color=COLOURS["printed"], label="the assignment's printed accuracy")
    _style(ax, "Test accuracy (10,000 images) after each epoch", "epoch", "test accuracy (%)")
    ax.set_ylim(FLOOR, 100)
    ax.set_xticks(range(1, 1 + max([10, *(p[0] for s in series for p in s["points"])])))
    _legend_beside(ax)
    return _save(figure, path)


def digits(series: Sequence[dict[str, Any]], path: Path) -> Path:
    """Q23's digits, each titled with its split, index and label."""
    shown = sorted({(s["split"], s["index"]): s for s in series}.values(), key=lambda s: s["split"], reverse=True)
    figure = _figure(2.6 * len(shown), 3.2)
    for i, s in enumerate(shown, 1):
        ax = figure.add_subplot(1, len(shown), i)
        ax.imshow(s["pixels"], cmap="gray")
        ax.set_title(f"{s['split']} image {s['index']}\nlabel {s['label']}", fontsize=FONT)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(figure, path)


def sweep(result: dict[str, Any], path: Path) -> Path:
    """A seed sweep's test accuracies as a histogram, the printed figure for that many epochs marked.
    `result`: {"recipe", "epochs", "device", "runs": [{"seed", "test_accuracy"}, ...]}."""
    values = [run["test_accuracy"] for run in result["runs"]]
    device = result.get("device", "cpu")
    figure = _figure()
    ax = figure.add_subplot()
    ax.hist(values, bins=min(20, max(5, len(values) // 2)), color=COLOURS.get(device, COLOURS["cpu"]), alpha=0.8,
            label=f"{len(values)} seeds, {RECIPE_NAMES.get(result['recipe'], result['recipe'])}, {device}")  # fmt: skip
    if result.get("epochs") in printed.PRINTED_ACCURACY:
        value = printed.PRINTED_ACCURACY[result["epochs"]]
        ax.axvline(value, color=COLOURS["printed"], lw=2, label=f"the assignment's printed {value}%")
    _style(ax, f"Test accuracy after {result.get('epochs', '?')} epochs, over seeds", "test accuracy (%)", "seeds")
    ax.legend(fontsize=FONT - 1)
    return _save(figure, path)


def benchmarks(result: dict[str, Any], path: Path) -> Path:
    """Epoch seconds and images per second, per device and engine, from pytest-benchmark's JSON: the
    epoch benchmarks that name their bar in extra_info's `plotted_as` (spec/benchmarks/test_benchmarks.py)."""
    bars: list[tuple[str, str, float, float]] = []  # (device, engine, median seconds, images per second)
    for bench in result["benchmarks"]:
        engine = bench["extra_info"].get("plotted_as")
        if engine:
            device = bench["name"].partition("[")[2].rstrip("]") or "cpu"
            seconds = bench["stats"]["median"]
            images = bench["extra_info"].get("images_per_second") or 60_000 / seconds
            bars.append((device, engine, seconds, images))
    bars.sort(key=lambda b: (b[0], b[1] != "printed loop"))
    figure = _figure()
    left, right = figure.subplots(1, 2)
    labels = [f"{device}\n{engine}" for device, engine, _, _ in bars]
    colours = [COLOURS.get(device, "grey") for device, *_ in bars]
    hatches = ["//" if engine == "printed loop" else "" for _, engine, _, _ in bars]
    for ax, values, title, ylabel, text in (
        (left, [b[2] for b in bars], "One epoch of the printed recipe", "seconds (median)", "{:.2f} s"),
        (right, [b[3] / 1000 for b in bars], "Training images per second", "thousand images / s", "{:.0f}k"),
    ):
        drawn = ax.bar(labels, values, color=colours, hatch=hatches, edgecolor="white")
        ax.bar_label(drawn, [text.format(v) for v in values], fontsize=FONT - 1)
        _style(ax, title, "", ylabel)
        ax.margins(y=0.12)
    figure.suptitle(_machine(result), fontsize=FONT)
    return _save(figure, path)


def _machine(result: dict[str, Any]) -> str:
    """The machine the benchmarks ran on: its GPUs and its host's processor."""
    cpu = result.get("machine_info", {}).get("cpu", {})
    gpus = sorted({str(b["extra_info"].get("device")) for b in result["benchmarks"]} - {"None", "cpu"})
    host = f"{cpu.get('brand_raw', 'CPU')}, {cpu.get('count', '?')} cores" if cpu else "CPU"
    return ", ".join([*gpus, host])


def histogram(series: dict[str, Sequence[float]], path: Path, title: str, xlabel: str) -> Path:
    """How a class's values spread: one histogram a series, on shared bins (the class report)."""
    figure = _figure(height=3.4)
    ax = figure.add_subplot()
    values = [v for vs in series.values() for v in vs]
    low, high = min(values), max(values)
    bins = [low + (high - low) * i / 20 for i in range(21)] if high > low else 10
    for label, vs in series.items():
        ax.hist(vs, bins=bins, alpha=0.6, label=label)
    _style(ax, title, xlabel, "notebooks")
    _legend_beside(ax)
    return _save(figure, path)
