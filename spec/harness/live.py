"""A kernel's own definitions as the implementation under test: what `check()` (spec/check.py) runs the
question modules against.

`LiveRun` is the pytest plugin check() passes to pytest: it hands the spec's plugin (spec/harness/plugin.py)
a `LiveImplementation` over the kernel's objects as they stand, runs each question's quick
tests before those that train, and tells a `Watcher` what happens as it happens: a test started, a verdict,
the student's training loop's progress from the loss lines it prints. Everything else, the fixtures, the
tests and their messages, is the grader's own. It is advisory: the code runs in the student's own process;
grading runs it in the sandboxed worker (spec/sandbox).
"""

from __future__ import annotations

import functools
import inspect
import io
import math
import sys
import time
import types
from collections.abc import Callable, Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Protocol

import pytest

from spec.harness.cells import LOG_LINE
from spec.harness.impl import PackageImplementation
from spec.harness.plugin import LIVE, question_of
from spec.harness.text import QUESTION
from spec.reports.verdicts import QuestionVerdict, VerdictCollector

KERNEL = "the kernel"  # the implementation's name in messages and reports
WATCHED_IMAGES = 10_000  # a backprop_deep call on this many images or more is a real run: its progress is shown


class Watcher(Protocol):
    """What check() shows while the questions run."""

    def started(self, question: str, test: str, training: bool) -> None: ...

    def finished(self, verdict: QuestionVerdict) -> None: ...

    def training(self, epoch: int, epochs: int, loss: float, done: float, seconds: float) -> None:
        """The loop printed `[epoch, k] loss: x`: `done` of the run (0 to 1) after `seconds`."""

    def done(self) -> None:
        """The run is over: its result is shown apart."""


class LiveImplementation(PackageImplementation):
    """The contract's names looked up in a kernel's namespace, a snapshot taken when the run starts."""

    def __init__(self, namespace: Mapping[str, Any], data: Path, watcher: Watcher) -> None:
        super().__init__(KERNEL, data)
        self.namespace, self.watcher = dict(namespace), watcher

    @functools.cached_property
    def module(self) -> types.ModuleType:
        module = types.ModuleType(KERNEL)
        module.__dict__.update(self.namespace)
        return module

    @property
    def serves_course(self) -> bool:
        return True

    @property
    def containment(self) -> str:
        return "in the student's own kernel (advisory: grading runs it in a sandboxed worker)"

    def missing(self, name: str) -> str:
        return f"{name} is not defined in this kernel yet: run the cell that defines it"

    def student_location(self, error: BaseException) -> str | None:
        """Where the traceback last leaves the kernel's cells, as IPython names them: 'Cell In[37], line 49,
        in forward'."""
        try:
            from IPython import get_ipython

            name = get_ipython().compile.format_code_name
        except (ImportError, AttributeError):  # not in IPython: no cells to name
            return None
        found, tb = None, error.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            cell = name(code.co_filename)
            if cell is not None:
                found = f"{' '.join(cell)}, line {tb.tb_lineno}, in {code.co_name}"
            tb = tb.tb_next
        return found

    def guarded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        return super().guarded(name, self._watched(function) if name == "backprop_deep" else function)

    def _watched(self, train: Callable[..., Any]) -> Callable[..., Any]:
        """backprop_deep, its loss lines passed on to the watcher as it prints them, on a real run."""
        try:
            signature = inspect.signature(train)
        except (TypeError, ValueError):  # a builtin or an odd callable: no progress, the same call
            return train

        @functools.wraps(train)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                images, epochs, batch = len(args[0]), int(bound.arguments["T"]), int(bound.arguments["B"])
            except (TypeError, KeyError, ValueError, IndexError):
                return train(*args, **kwargs)  # the test's own call shows what is wrong with it
            if images < WATCHED_IMAGES:
                return train(*args, **kwargs)
            minibatches, start = epochs * math.ceil(images / batch), time.perf_counter()

            def line(text: str) -> None:
                match = LOG_LINE.match(text.strip())
                if match:
                    epoch, k = int(match[1]), int(match[2])
                    done = min(1.0, ((epoch - 1) * math.ceil(images / batch) + k) / minibatches)
                    self.watcher.training(epoch, epochs, float(match[3]), done, time.perf_counter() - start)

            with redirect_stdout(_Lines(sys.stdout, line)):
                return train(*args, **kwargs)

        return call


class _Lines(io.TextIOBase):
    """Passes writes on to `stream`, and each whole line to `line`."""

    def __init__(self, stream: Any, line: Callable[[str], None]) -> None:
        self.stream, self.line, self.partial = stream, line, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.stream.write(text)
        *whole, self.partial = (self.partial + text).split("\n")
        for each in whole:
            self.line(each)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class LiveRun:
    """The plugin check() runs pytest with: the implementation, the order of the tests, the verdicts."""

    def __init__(self, namespace: Mapping[str, Any], watcher: Watcher) -> None:
        self.namespace, self.watcher = namespace, watcher
        self.collector = VerdictCollector()
        self.interrupted = False
        self.used: LiveImplementation | None = None  # what the spec's plugin took as the implementation

    @pytest.hookimpl(tryfirst=True)  # before the spec's plugin asks for the implementation
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[LIVE] = self

    def implementation(self, data: Path) -> LiveImplementation:
        self.used = LiveImplementation(self.namespace, data, self.watcher)
        return self.used

    @pytest.hookimpl(trylast=True)  # after the spec's plugin has chosen the questions
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """The quick tests first, the tests that train last: a wrong loop is heard of in seconds."""
        items.sort(key=lambda item: "training" in item.keywords)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        question = question_of(item)
        if question is not None:
            self.watcher.started(question, item.name, "training" in item.keywords)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add(report)
        question = dict(report.user_properties).get(QUESTION)
        if question is not None and report.when == "teardown":
            verdict = self.collector.get(question)
            if verdict is not None:
                self.watcher.finished(verdict)

    def pytest_keyboard_interrupt(self) -> None:
        self.interrupted = True
