"""What check() (spec/check.py) shows in a notebook: its result as a table, and its progress as it runs.

`CheckResult` is check()'s typed answer: Jupyter shows it as a small HTML table (question, verdict,
message), a terminal as plain text. While the questions run, a watcher shows one status line: the question
and test running, each verdict as it lands, and the student's training (epoch, loss, time left). In
Jupyter it is one display updated in place; elsewhere a line at a time on the terminal.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from spec.harness.contract import QUESTIONS
from spec.reports.verdicts import QuestionVerdict

GRADING = "Advisory: grading runs your code apart, in a sandboxed worker, on the same tests."


@dataclass
class CheckResult:
    """Each question checked, the questions waiting for a name the kernel lacks, and how the run ended."""

    verdicts: list[QuestionVerdict] = field(default_factory=list)
    waiting: dict[str, list[str]] = field(default_factory=dict)  # question -> the names it needs, not yet defined
    interrupted: list[str] = field(default_factory=list)  # questions left unchecked by the stop button
    not_trained: list[str] = field(default_factory=list)  # questions whose every test trains, left out (train=False)
    error: str = ""  # why nothing was checked, in one line
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every question checked passed, and none waits or was cut short."""
        return not (self.error or self.waiting or self.interrupted or self.not_trained) and all(
            v.outcome != "failed" for v in self.verdicts
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(question, verdict, message), in the assignment's order."""
        rows = {v.question: (v.question, v.outcome, v.message) for v in self.verdicts}
        for question, names in self.waiting.items():
            rows[question] = (question, "not checked", f"needs {_names(names)}, not defined in this kernel yet")
        for question in self.not_trained:
            rows[question] = (question, "not checked", "it trains on all of MNIST: check it with train=True")
        for question in self.interrupted:
            rows[question] = (question, "interrupted", "stopped before its tests ended")
        return [rows[q] for q in QUESTIONS if q in rows]

    def summary(self) -> str:
        if self.error:
            return self.error
        counts = [f"{sum(r[1] == outcome for r in self.rows())} {outcome}"
                  for outcome in ("passed", "failed", "skipped", "not checked", "interrupted")]  # fmt: skip
        shown = ", ".join(c for c in counts if not c.startswith("0 "))
        return f"{shown or 'nothing checked'} in {self.seconds:.1f} s"

    def missing_line(self) -> str:
        """The names the kernel still lacks, and the questions waiting for them."""
        needed = sorted({name for names in self.waiting.values() for name in names})
        if not needed:
            return ""
        return f"Not defined yet: {_names(needed)} (needed by {', '.join(self.waiting)})."

    def __repr__(self) -> str:
        if self.error:
            return self.error
        width = max([len(r[0]) for r in self.rows()] + [8])
        lines = [f"{q:<{width}}  {outcome:<11}  {message}".rstrip() for q, outcome, message in self.rows()]
        tail = [line for line in (self.missing_line(), GRADING) if line]
        return "\n".join([self.summary(), *lines, *tail])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        if self.error:
            return f"<p><b>check:</b> {html.escape(self.error)}</p>"
        left = "style='text-align:left'"
        body = "".join(
            f"<tr><td {left}>{html.escape(q)}</td><td {left}><b style='color:{_COLOURS.get(outcome, 'inherit')}'>"
            f"{html.escape(outcome)}</b></td><td {left}>{_code(message)}</td></tr>"
            for q, outcome, message in self.rows()
        )
        tail = "".join(f"<p>{_code(line)}</p>" for line in (self.missing_line(), GRADING) if line)
        return (f"<p><b>check:</b> {html.escape(self.summary())}</p><table><thead><tr><th {left}>question</th>"
                f"<th {left}>verdict</th><th {left}>message</th></tr></thead><tbody>{body}</tbody></table>"
                f"{tail}")  # fmt: skip


_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "interrupted": "#9a6700", "not checked": "#9a6700"}


def _code(text: str) -> str:
    """`text` as HTML, its `quoted` spans as code, as Markdown shows them."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _names(names: list[str]) -> str:
    return " and ".join(f"`{name}`" for name in names)


def training_line(epoch: int, epochs: int, loss: float, done: float, seconds: float) -> str:
    """'training: epoch 2 of 10, loss 0.412, 25 s so far, about 1 min 40 s left'."""
    left = seconds * (1 - done) / done if done > 0 else 0.0
    return (f"training your LeNet with your backprop_deep: epoch {epoch} of {epochs}, loss {loss:.3f}, "
            f"{_duration(seconds)} so far, about {_duration(left)} left")  # fmt: skip


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


class Status:
    """The status shared by both watchers: the question running, and the verdicts so far."""

    def __init__(self) -> None:
        self.question, self.line = "", ""
        self.verdicts: dict[str, str] = {}

    def started(self, question: str, test: str, training: bool) -> None:
        self.question = question
        self.line = f"{question}: {'training, ' if training else ''}{test}"

    def finished(self, verdict: QuestionVerdict) -> None:
        self.verdicts[verdict.question] = verdict.outcome

    def training(self, epoch: int, epochs: int, loss: float, done: float, seconds: float) -> None:
        self.line = f"{self.question}: {training_line(epoch, epochs, loss, done, seconds)}"

    def done(self) -> None:
        """Nothing more to show: the result is shown apart."""

    def so_far(self) -> str:
        return ", ".join(f"{q} {outcome}" for q, outcome in self.verdicts.items())


class JupyterWatcher(Status):
    """One display, updated in place: the verdicts so far and what runs now."""

    def __init__(self) -> None:
        super().__init__()
        from IPython.display import display

        self.handle = display(_Html(""), display_id=True)

    def _show(self) -> None:
        so_far = self.so_far()
        text = html.escape(self.line) + (f"<br>{html.escape(so_far)}" if so_far else "")
        self.handle.update(_Html(f"<p style='font-family:monospace'>{text}</p>", plain=self.line))

    def started(self, question: str, test: str, training: bool) -> None:
        super().started(question, test, training)
        self._show()

    def finished(self, verdict: QuestionVerdict) -> None:
        super().finished(verdict)
        self._show()

    def training(self, epoch: int, epochs: int, loss: float, done: float, seconds: float) -> None:
        super().training(epoch, epochs, loss, done, seconds)
        self._show()

    def done(self) -> None:
        self.handle.update(_Html(""))  # the result's table says it all


class TextWatcher(Status):
    """A line when a question starts or ends, and at most one a TRAINING_EVERY seconds while it trains."""

    TRAINING_EVERY = 10.0

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream, self.shown = stream, 0.0
        self.begun: set[str] = set()

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def started(self, question: str, test: str, training: bool) -> None:
        if question not in self.begun:
            self.begun.add(question)
            self._print(f"checking {question}")
        super().started(question, test, training)

    def training(self, epoch: int, epochs: int, loss: float, done: float, seconds: float) -> None:
        super().training(epoch, epochs, loss, done, seconds)
        if time.monotonic() - self.shown >= self.TRAINING_EVERY:
            self.shown = time.monotonic()
            self._print(self.line)


class _Html:
    """A display object: HTML in Jupyter, `plain` in a terminal frontend."""

    def __init__(self, markup: str, plain: str = "") -> None:
        self.markup, self.plain = markup, plain

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.plain
