"""The implementation under test: the package, a notebook's worker, or a kernel's live definitions, asked
for the contract's names.

`--impl` names it (spec/harness/plugin.py) and `implementation()` picks, once, the class that serves it:
- `PackageImplementation`: a module name (`mnist_lab`, the default), imported here: it is trusted;
- `NotebookImplementation`: a notebook (`their.ipynb`) or a script (`their.py`), read by
  `spec.harness.notebook`, its definitions built in a sandboxed worker (spec/sandbox): this process never
  runs a line of it, and its functions are `RemoteFunction`s, its networks `RemoteNet`s;
- `LiveImplementation` (spec/harness/live.py): the kernel's own objects, for check().
The run's one implementation lives in the plugin's session state; tests get it from the `impl` fixture.

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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from spec.harness.contract import CONTRACT
from spec.sandbox import containment
from spec.sandbox.client import Worker
from spec.sandbox.errors import SandboxError
from spec.sandbox.remote import RemoteFunction
from spec.sandbox.wire import OUTPUT_LIMIT

if TYPE_CHECKING:
    from spec.harness.notebook import Notebook, Skipped

DEFAULT_IMPL = "mnist_lab"


class ImplementationError(Exception):
    """--impl names nothing that can be graded: no such file, or a module that does not import. One line."""


def implementation(name: str = DEFAULT_IMPL, data: Path | None = None, base: Path | None = None) -> Implementation:
    """What `name` names: a notebook's or script's path (from `base`, else the current folder), else a module,
    imported here. The one place that tells them apart."""
    if name.endswith((".ipynb", ".py")) or os.sep in name:
        path = Path(base or Path.cwd(), name).resolve()
        if not path.is_file():
            raise ImplementationError(f"--impl {name}: no such file")
        return NotebookImplementation(str(path), data)
    impl = PackageImplementation(name, data)
    try:
        impl.ready()
    except ImportError as err:
        raise ImplementationError(f"cannot import the implementation {name!r}: {err}") from None
    return impl


class Implementation(ABC):
    """The contract's names, looked up in the implementation `name` when a test asks for them."""

    grading = True  # whether the spec runs on someone else's code, not on mnist_lab
    serves_course = True  # whether the course's MNISTtools come from the grader, not from the implementation

    def __init__(self, name: str, data: Path | None = None) -> None:
        self.name = name
        self.data = data  # the prepared MNIST (spec/harness/prepared.py), which a notebook's worker maps
        self.hung: dict[str, str] = {}  # graded function -> the test in which it ran past its time limit

    def __getattr__(self, name: str) -> Any:
        if name not in CONTRACT:
            raise AttributeError(f"{name} is not in the contract (spec/harness/contract.py)")
        self.ready()
        if CONTRACT[name].written_by == "course" and self.serves_course:
            return getattr(self.course, name)  # the course's tools, whatever the student's code defines
        return self.lookup(name)

    @abstractmethod
    def ready(self) -> None:
        """Load the implementation, once; a failed test (or SandboxError) where it cannot be."""

    @abstractmethod
    def lookup(self, name: str) -> Any:
        """The contract's `name` as the implementation defines it, graded functions guarded; a failed test
        where it does not."""

    @abstractmethod
    def backprop_with_epoch_states(self, xtrain: Any, ltrain: Any, net: Any, epochs: int) -> list[dict[str, Any]]:
        """`backprop_deep(xtrain, ltrain, net, T=epochs)`, and the net's weights at the end of each epoch but
        the last: when the loop draws its next np.random.permutation, as the printed one does once an epoch."""

    @property
    @abstractmethod
    def containment(self) -> str:
        """How the implementation's code ran: in this process, or in which sandbox (the report's line)."""

    @functools.cached_property
    def course(self) -> ModuleType:
        from spec.harness import notebook

        return notebook.course_tools()

    def spawn_worker(self) -> None:  # noqa: B027 (nothing to start, but for a notebook)
        """Start what runs the implementation's code now, while the tests are collected (a notebook's worker)."""

    def close(self) -> None:  # noqa: B027 (nothing to stop, but for a notebook)
        """Stop whatever runs the implementation's code."""

    def student_location(self, error: BaseException) -> str | None:
        """Where in the student's code an exception was raised; None where that is not known."""
        return None

    def skipped_binding(self, name: str) -> Skipped | None:
        """The skipped code that alone binds `name`, for a NameError's note; None where there is none."""
        return None

    def skipped_cells(self) -> list[dict[str, Any]]:
        """What of the notebook was not run, and why; the statements that raised while it was built too."""
        return []

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


class PackageImplementation(Implementation):
    """A module imported into this process: the trusted package, or a kernel's namespace (live.py)."""

    serves_course = False

    def __init__(self, name: str = DEFAULT_IMPL, data: Path | None = None) -> None:
        super().__init__(name, data)

    @property
    def grading(self) -> bool:  # type: ignore[override]
        return self.name != DEFAULT_IMPL

    @functools.cached_property
    def module(self) -> ModuleType:
        """Imported once per process."""
        return importlib.import_module(self.name)

    def ready(self) -> None:
        self.module  # noqa: B018 (the import is the point)

    def lookup(self, name: str) -> Any:
        value = getattr(self.module, name, None)
        if value is None:
            pytest.fail(self.missing(name), pytrace=False)
        if inspect.isclass(value) or not callable(value):
            return value
        return self.guarded(name, value)

    def missing(self, name: str) -> str:
        """Why the module lacks `name`, in one line."""
        return f"{name} is not defined in {self.module.__name__}"

    def backprop_with_epoch_states(self, xtrain: Any, ltrain: Any, net: Any, epochs: int) -> list[dict[str, Any]]:
        from spec.harness.cells import epoch_states

        states: list[dict[str, Any]] = []
        with epoch_states(net, states):
            self.backprop_deep(xtrain, ltrain, net, T=epochs)
        return states

    @property
    def containment(self) -> str:
        return f"in the grader's process ({self.name} is trusted)"


@dataclass
class Built:
    """A notebook as its worker built it, or why it could not be."""

    notebook: Notebook | None = None
    error: str | None = None  # why the notebook could not be read or built, in one line
    not_graded: str | None = None  # the grader's own failure: why its sandbox did not start (SandboxError's)


class NotebookImplementation(Implementation):
    """A notebook or script, its definitions built in a sandboxed worker; never run in this process."""

    def __init__(self, name: str, data: Path | None = None) -> None:
        super().__init__(name, data)
        self._spawned: Worker | None = None
        self._not_graded: str | None = None  # why the worker spawned early did not start

    def spawn_worker(self) -> None:
        """Start the notebook's worker now, so that it imports torch while the tests are collected."""
        if self._spawned is None:
            self._spawned = Worker(hidden=[Path(self.name).resolve().parent], data=self.data)
            try:
                self._spawned.spawn()
            except SandboxError as err:
                self._not_graded = str(err)

    @functools.cached_property
    def built(self) -> Built:
        """Built once per process; a notebook that cannot be read, or a sandbox that cannot start, is
        remembered as such."""
        from spec.harness import notebook

        if self._not_graded:
            return Built(not_graded=self._not_graded)
        try:
            return Built(notebook.build(notebook.plan(Path(self.name)), self._spawned, self.data))
        except notebook.NotebookError as err:
            return Built(error=str(err))
        except SandboxError as err:  # before any of the notebook ran: the grader's failure
            return Built(not_graded=str(err))

    def ready(self) -> None:
        self._notebook()

    def _notebook(self) -> Notebook:
        built = self.built
        if built.not_graded:
            raise SandboxError(built.not_graded)
        if built.error:
            pytest.fail(built.error, pytrace=False)
        assert built.notebook is not None
        return built.notebook

    def _remote(self, name: str) -> RemoteFunction:
        notebook = self._notebook()
        if name not in notebook.names:
            pytest.fail(notebook.missing(name), pytrace=False)
        return RemoteFunction(notebook.worker, name)

    def lookup(self, name: str) -> Any:
        return self.guarded(name, self._remote(name))

    def backprop_with_epoch_states(self, xtrain: Any, ltrain: Any, net: Any, epochs: int) -> list[dict[str, Any]]:
        train = self.guarded("backprop_deep", self._remote("backprop_deep").with_epoch_states)
        return train(xtrain, ltrain, net, T=epochs)[1]

    @property
    def containment(self) -> str:
        built = self.__dict__.get("built")  # never built here only to say so (xdist's controller)
        if built is not None and built.not_graded:
            return f"nowhere: no worker started ({built.not_graded})"
        return containment.choose().line()

    def close(self) -> None:
        if self._spawned is not None:
            self._spawned.close()
        built = self.__dict__.get("built")
        if built is not None and built.notebook is not None:
            built.notebook.worker.close()

    def student_location(self, error: BaseException) -> str | None:
        """Where in the student's notebook an exception was raised, as its worker said."""
        return getattr(error, "student_location", None)

    def skipped_binding(self, name: str) -> Skipped | None:
        built = self.built.notebook
        return built.skipped_binding(name) if built is not None else None

    def skipped_cells(self) -> list[dict[str, Any]]:
        built = self.built.notebook
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
