"""The implementation under test: a notebook, a script or a module, asked for the contract's names.

`--impl` names it (spec/harness/plugin.py): a notebook (`their.ipynb`), a script (`their.py`) or a module
name (`mnist_lab`, the default). A module is imported here: it is trusted. A notebook or script is read by
`spec.harness.notebook` and its definitions are built in a sandboxed worker (spec/sandbox): this process
never runs a line of it, and its functions are `RemoteFunction`s, its networks `RemoteNet`s; `load` and
`show` come from the course's MNISTtools as mnist_lab serves them, here. The run's one `Implementation`
lives in the plugin's session state; tests get it from the `impl` fixture.

Tests ask `impl` for the contract's names (`spec.harness.contract`). A name the implementation lacks
fails the test that asked, with one line that says why. Each graded function is called through a
guard, so that student code cannot stop the run: `exit()` inside it is a failure, a function that once
ran past the time limit (pytest-timeout) is not called again, and output past OUTPUT_LIMIT fails the test.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from spec.harness.contract import CONTRACT
from spec.sandbox.client import SandboxError, Worker, containment
from spec.sandbox.remote import RemoteFunction

DEFAULT_IMPL = "mnist_lab"
OUTPUT_LIMIT = 1_000_000  # characters a graded call may print, stdout and stderr each


def is_file(name: str) -> bool:
    """A notebook or script path rather than a module name."""
    return name.endswith((".ipynb", ".py")) or os.sep in name


@dataclass
class Loaded:
    module: ModuleType | None
    notebook: Any = None  # spec.harness.notebook.Notebook, for a notebook or script
    error: str | None = None  # why nothing could be loaded, in one line
    not_graded: str | None = None  # the grader's own failure: why its sandbox did not start (SandboxError's)


class Implementation:
    """The contract's names, looked up in the implementation `name` when a test asks for them."""

    def __init__(self, name: str = DEFAULT_IMPL, data: Path | None = None) -> None:
        self.name = name
        self.data = data  # the prepared MNIST (spec/harness/prepared.py), which a notebook's worker maps
        self.hung: dict[str, str] = {}  # graded function -> the test in which it ran past its time limit
        self._spawned: Worker | None = None
        self._not_graded: str | None = None  # why the worker spawned early did not start

    def spawn_worker(self) -> None:
        """For a notebook: start its worker now, so that it imports torch while the tests are collected."""
        if is_file(self.name) and self._spawned is None:
            self._spawned = Worker(hidden=[Path(self.name).resolve().parent], data=self.data)
            try:
                self._spawned.spawn()
            except SandboxError as err:
                self._not_graded = str(err)

    @property
    def grading(self) -> bool:
        """True when the spec runs on someone else's code, not on mnist_lab."""
        return self.name != DEFAULT_IMPL

    @functools.cached_property
    def loaded(self) -> Loaded:
        """Imported once per process; a notebook that cannot be read is remembered as such."""
        if not is_file(self.name):
            return Loaded(importlib.import_module(self.name))
        from spec.harness import notebook

        if self._not_graded:
            return Loaded(None, not_graded=self._not_graded)
        try:
            built = notebook.build(notebook.plan(Path(self.name)), self._spawned, self.data)
        except notebook.NotebookError as err:
            return Loaded(None, error=str(err))
        except SandboxError as err:  # before any of the notebook ran: the grader's failure
            return Loaded(None, not_graded=str(err))
        return Loaded(None, notebook=built)

    def __getattr__(self, name: str) -> Any:
        if name not in CONTRACT:
            raise AttributeError(f"{name} is not in the contract (spec/harness/contract.py)")
        loaded = self.loaded
        if loaded.not_graded:
            raise SandboxError(loaded.not_graded)
        if loaded.error:
            pytest.fail(loaded.error, pytrace=False)
        if CONTRACT[name].written_by == "course" and self.serves_course:
            return getattr(self.course, name)  # the course's tools, whatever the student's code defines
        if loaded.notebook is not None:
            if name not in loaded.notebook.names:
                pytest.fail(loaded.notebook.missing(name), pytrace=False)
            return self.guarded(name, RemoteFunction(loaded.notebook.worker, name))
        value = getattr(loaded.module, name, None)
        if value is None:
            pytest.fail(self.missing(name), pytrace=False)
        if inspect.isclass(value) or not callable(value):
            return value
        return self.guarded(name, value)

    @property
    def serves_course(self) -> bool:
        """Whether the course's MNISTtools come from the grader (a student's code), not from the implementation."""
        return is_file(self.name)

    def missing(self, name: str) -> str:
        """Why a module lacks `name`, in one line."""
        return f"{name} is not defined in {self.loaded.module.__name__}"

    def backprop_with_epoch_states(
        self, xtrain: Any, ltrain: Any, net: Any, epochs: int
    ) -> list[dict[str, Any]]:
        """`backprop_deep(xtrain, ltrain, net, T=epochs)`, and the net's weights at the end of each epoch but
        the last: when the loop draws its next np.random.permutation, as the printed one does once an epoch."""
        train = self.backprop_deep
        if self.loaded.notebook is not None:
            remote = train.__wrapped__
            train(xtrain, ltrain, net, T=epochs, snapshots=True)
            return remote.snapshots
        from spec.harness.cells import epoch_states

        states: list[dict[str, Any]] = []
        with epoch_states(net, states):
            train(xtrain, ltrain, net, T=epochs)
        return states

    @functools.cached_property
    def course(self) -> ModuleType:
        from spec.harness import notebook

        return notebook.course_tools()

    @property
    def containment(self) -> str:
        """How the implementation's code ran: in this process (the trusted package), or in which sandbox."""
        if not is_file(self.name):
            return f"in the grader's process ({self.name} is trusted)"
        loaded = self.__dict__.get("loaded")  # never built here only to say so (xdist's controller)
        if loaded is not None and loaded.not_graded:
            return f"nowhere: no worker started ({loaded.not_graded})"
        return containment().line()

    def close(self) -> None:
        """Stop the notebook's worker, if one was started."""
        if self._spawned is not None:
            self._spawned.close()
        if "loaded" in self.__dict__ and self.loaded.notebook is not None:
            self.loaded.notebook.worker.close()

    def guarded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, called so that exit(), a hang or a flood fails the test with one line."""

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.hung:
                pytest.fail(
                    f"{name} did not return within the time limit in {self.hung[name]}; not called again",
                    pytrace=False,
                )
            try:
                with _bounded_output(name):
                    return function(*args, **kwargs)
            except SystemExit as stop:  # the trusted package's own function
                pytest.fail(f"{name} called exit() or sys.exit({stop.code!r}): a graded function must return",
                            pytrace=False)  # fmt: skip
            except pytest.fail.Exception as failed:
                if str(failed).startswith("Timeout"):  # pytest-timeout's signal
                    self.hung[name] = os.environ.get("PYTEST_CURRENT_TEST", "an earlier test").split(" ")[0]
                raise

        return call

    def student_location(self, error: BaseException) -> str | None:
        """Where in the student's notebook an exception was raised, as its worker said."""
        return getattr(error, "student_location", None) if is_file(self.name) else None

    def skipped_cells(self) -> list[dict[str, Any]]:
        """What of the notebook was not run, and why; the statements that raised while it was built too."""
        built = self.loaded.notebook if is_file(self.name) else None
        if built is None:
            return []
        entries = sorted([*built.plan.skipped, *built.failed], key=lambda entry: (entry.cell, entry.lines))
        return [entry.as_dict() for entry in entries]


class _Limited(io.TextIOBase):
    """Passes writes on to `stream` until `limit` characters, then only counts them."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.left, self.dropped = stream, limit, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        shown = text[: max(self.left, 0)]
        if shown:
            self.stream.write(shown)
        self.left -= len(text)
        self.dropped += len(text) - len(shown)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def _bounded_output(name: str) -> Iterator[None]:
    out, err = _Limited(sys.stdout, OUTPUT_LIMIT), _Limited(sys.stderr, OUTPUT_LIMIT)
    with redirect_stdout(out), redirect_stderr(err):
        yield
    for stream, which in ((out, "stdout"), (err, "stderr")):
        if stream.dropped:
            pytest.fail(f"{name} flooded {which}: {OUTPUT_LIMIT + stream.dropped:,} characters, more than the "
                        f"{OUTPUT_LIMIT:,} allowed", pytrace=False)  # fmt: skip
