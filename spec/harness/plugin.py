"""The spec's pytest plugin: its options, its hooks, and the run's one state (`Session`, on config.stash).

- `--impl` (default $MNIST_LAB_IMPL, else mnist_lab) picks the implementation: a notebook, a script or a
  module. On anything but mnist_lab only the questions run (tests without a `question` mark are
  deselected), in a temporary working folder, and the run ends with a table of the questions' verdicts.
- `--questions Q21,Q26` runs only those questions' tests.
- `--grade-report PATH` writes that table as PATH.json and PATH.md (spec/reports/grade_report.py).
- `--report DIR` writes what the assignment printed against what this run measured (spec/reports/spec_report.py).
- `--train-seed S` seeds the training runs of Q29-Q33 (0 by default; the bounds hold for every seed).
- Tests marked `cuda` are skipped with the reason "CUDA not available" where there is no GPU; under
  xdist they all go to one worker, so `pytest -n auto` does not crowd a single GPU. A test that breaks
  the process's CUDA context is named once (spec/harness/cuda_health.py).
- Benchmarks run only with `--benchmark-only`: the test suite stays fast and xdist-safe.
- Hypothesis is derandomised; the fixtures (spec/harness/fixtures.py) seed every test by its own id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from spec.harness import budget
from spec.harness.budget import Budget
from spec.harness.contract import QUESTIONS, QuestionsError, parse_questions
from spec.harness.cores import threads_per_worker
from spec.harness.cuda_health import CudaHealth
from spec.harness.impl import DEFAULT_IMPL, Implementation, ImplementationError, implementation
from spec.harness.text import NOT_GRADED, NOTE, QUESTION, STUDENT_CODE
from spec.sandbox.errors import CallError, SandboxError

IMPL_ENV = "MNIST_LAB_IMPL"
CUDA = torch.cuda.is_available()
# A test's time limit, set-up included: student code that never returns fails its test, not the run. It is
# pytest-timeout's signal method (its default where SIGALRM exists), which raises inside the test.
TEST_TIMEOUT = 120
TRAINING_TIMEOUT = 1800  # seconds for a `training` test: 10 epochs of a plain loop on a slow 2-core CPU
# The spec's own markers and warnings, registered here rather than in pyproject.toml: check() (spec/check.py)
# runs the question modules with this plugin and no configuration file.
MARKERS = (
    "question(name): the assignment's question a module's tests specify, a key of spec/harness/contract.py's "
    "QUESTIONS",
    "cuda: needs a CUDA GPU; skipped, with the reason, where there is none",
    "training: trains LeNet on all of MNIST (minutes on a CPU); its time limit is TRAINING_TIMEOUT",
    "grading: grades notebooks, or runs code in the sandboxed worker, in processes of their own (seconds to "
    "minutes each)",
    "xdist_group: run these tests on one xdist worker (registered here too for runs with -p no:xdist)",
)
WARNINGS_AS_ERRORS = ("error::pytest.PytestUnraisableExceptionWarning",)
_BUDGET = pytest.StashKey[Budget]()

# Derandomised: the same examples every run. One failure reported, so that its first line says what is wrong.
settings.register_profile("spec", derandomize=True, database=None, report_multiple_bugs=False)
settings.load_profile("spec")


@dataclass
class Session:
    """What this run is: the implementation under test and the options that shape it."""

    impl: Implementation
    train_seed: int
    questions: frozenset[str]  # --questions; empty for every question
    cuda: CudaHealth
    hypothesis_dir: str
    made_mnist_folder: Path | None  # the folder MNIST is prepared in (impl.data), where this run made it


SESSION = pytest.StashKey[Session]()
# check()'s plugin (spec/harness/live.py) puts itself here, first thing: it supplies the kernel's objects.
LIVE = pytest.StashKey[Any]()


def session(config: pytest.Config) -> Session:
    return config.stash[SESSION]


def question_of(item: pytest.Item) -> str | None:
    """The question a test belongs to: its module's `question` mark, or None for a test of no question."""
    mark = item.get_closest_marker("question")
    return mark.args[0] if mark is not None else None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mnist-lab")
    group.addoption(
        "--impl",
        default=os.environ.get(IMPL_ENV) or None,
        help=f"the implementation to grade: a notebook, a script or a module (default: ${IMPL_ENV}, else mnist_lab)",
    )
    group.addoption("--questions", metavar="LIST", help="run only these questions, e.g. Q21,Q26,Q29-Q30")
    group.addoption("--grade-report", metavar="PATH", help="write each question's verdict to PATH.json and PATH.md")
    group.addoption("--train-seed", type=int, default=0, help="seed of the training runs of Q29-Q33 (default 0)")
    group.addoption(
        "--mnist-folder",
        metavar="DIR",
        help="where MNIST is prepared for the tests to map (spec/harness/prepared.py); a batch shares one "
        "(default: a temporary folder of this run's own)",
    )
    group.addoption(
        "--report", metavar="DIR", help="write DIR/report.md and DIR/report.html: printed against measured, with plots"
    )
    group.addoption("--report-sweep", metavar="PATH", help="with --report: a seed sweep's JSON, plotted as a histogram")
    group.addoption(
        "--report-benchmarks", metavar="PATH", help="with --report: pytest-benchmark's JSON, plotted per device"
    )


def _implementation(config: pytest.Config, data: Path) -> Implementation:
    """check()'s live objects (spec/harness/live.py); else --impl, a file resolved from the folder pytest was
    started in, or a module imported here, once."""
    if LIVE in config.stash:
        return config.stash[LIVE].implementation(data)
    name = config.getoption("--impl") or DEFAULT_IMPL
    try:
        return implementation(name, data, config.invocation_params.dir)
    except ImplementationError as err:
        raise pytest.UsageError(str(err)) from None


def _questions(text: str | None) -> frozenset[str]:
    """--questions as a set; a name that is no question is a one-line usage error."""
    if text is None:
        return frozenset()
    try:
        return frozenset(parse_questions(text))
    except QuestionsError as err:
        raise pytest.UsageError(f"--questions {text}: {err}") from None


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    for line in WARNINGS_AS_ERRORS:
        config.addinivalue_line("filterwarnings", line)
    given = config.getoption("--mnist-folder")
    mnist_folder = Path(config.invocation_params.dir, given or tempfile.mkdtemp(prefix="mnist-lab-data-")).resolve()
    mnist_folder.mkdir(parents=True, exist_ok=True)  # a notebook's worker, spawned below, binds it
    state = Session(
        impl=_implementation(config, mnist_folder),
        train_seed=config.getoption("--train-seed"),
        questions=_questions(config.getoption("--questions")),
        cuda=CudaHealth(),
        # Hypothesis keeps its files under the current folder: give each process its own, outside the repo.
        hypothesis_dir=tempfile.mkdtemp(prefix="mnist-lab-hypothesis-"),
        made_mnist_folder=None if given else mnist_folder,
    )
    config.stash[SESSION] = state
    set_hypothesis_home_dir(state.hypothesis_dir)
    config.pluginmanager.register(state.cuda)
    _register_reports(config, state)
    _schedule(config)
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        state.impl.spawn_worker()  # not on xdist's controller, which runs no test


def _register_reports(config: pytest.Config, state: Session) -> None:
    """The grade report when grading or asked for; the spec report (matplotlib, the report extra) when asked for."""
    if state.impl.grading or config.getoption("--grade-report"):
        from spec.reports.grade_report import GradeReport

        config.pluginmanager.register(GradeReport(config, state.impl, state.train_seed))
    if config.getoption("--report") or config.getoption("--report-sweep") or config.getoption("--report-benchmarks"):
        from spec.reports.spec_report import SpecReport

        config.pluginmanager.register(SpecReport.from_config(config, state.impl))


def _schedule(config: pytest.Config) -> None:
    """One GPU, many workers: `-n` alone means --dist load; make it loadgroup, so that the GPU tests share
    one worker and so do the tests that share a training run (the xdist_group marks). The controller
    schedules by `dist`; each worker decides by `loadgroup` whether to tag its test ids with their group,
    so both are set. And the workers share the cores out, not each a thread per core."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if hasattr(config, "workerinput"):
        config.option.loadgroup = True
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(threads_per_worker(workers))


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        state = session(config)
        state.impl.close()
        shutil.rmtree(state.hypothesis_dir, ignore_errors=True)
        if state.made_mnist_folder is not None:
            shutil.rmtree(state.made_mnist_folder, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    impl = session(config).impl
    gpu = f"yes ({torch.cuda.get_device_name(0)})" if CUDA else "no"
    lines = [
        f"torch {torch.__version__}, numpy {np.__version__}, CUDA available: {gpu}",
        f"implementation under test: {impl.name}",
    ]
    if impl.grading:
        lines.append("grading: only the questions run; the tests of no question are deselected")
        lines.append(f"graded code runs {impl.containment}")
    return lines


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return [config.stash[_BUDGET].line()] if _BUDGET in config.stash else []


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = session(config)
    for item in items:
        question = question_of(item)
        if question is not None and question not in QUESTIONS:
            raise pytest.UsageError(f"{item.nodeid}: question({question!r}) is not in spec/harness/contract.py")
        if question is not None:
            item.user_properties.append((QUESTION, question))
    wanted = [item for item in items if _wanted(question_of(item), state)]
    if len(wanted) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in wanted])
        items[:] = wanted
    for item in items:
        _add_marks(config, item)


def _training_timeout(config: pytest.Config) -> float:
    """The package's training tests get TRAINING_TIMEOUT; a graded notebook's, a budget fitted to this
    machine (spec/harness/budget.py), measured once per process when the first is collected."""
    if not session(config).impl.grading:
        return TRAINING_TIMEOUT
    if _BUDGET not in config.stash:
        config.stash[_BUDGET] = budget.measure(ceiling=TRAINING_TIMEOUT)
    return round(config.stash[_BUDGET].seconds)


def _timeout_given(config: pytest.Config) -> bool:
    """pytest-timeout's own --timeout or `timeout` ini value (`-o timeout=30`), which then sets the limit."""
    return bool(config.getoption("--timeout", None) or config.getini("timeout"))


def _wanted(question: str | None, state: Session) -> bool:
    if state.questions:
        return question in state.questions
    return question is not None or not state.impl.grading


def _add_marks(config: pytest.Config, item: pytest.Item) -> None:
    """Time limits, GPU scheduling and skips that follow from a test's marks and fixtures."""
    if "training" in item.keywords:
        item.add_marker(pytest.mark.timeout(_training_timeout(config)))
    elif item.get_closest_marker("timeout") is None and not _timeout_given(config):
        item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
    if "cuda" in item.keywords:
        item.add_marker(pytest.mark.xdist_group("cuda"), append=False)  # first: it wins over others
        if not CUDA:
            item.add_marker(pytest.mark.skip(reason="CUDA not available"))
    if "benchmark" in getattr(item, "fixturenames", ()) and not config.getoption("benchmark_only", default=False):
        item.add_marker(pytest.mark.skip(reason="a benchmark: run with --benchmark-only"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    """Name the place in the student's code where a failure happened; say when it was skipped code."""
    outcome = yield
    impl = session(item.config).impl
    if call.excinfo is None:
        return
    report = outcome.get_result()
    if isinstance(call.excinfo.value, SandboxError):  # the grader's failure: raised here, never by student code
        report.longrepr = f"not graded: {call.excinfo.value}"
        report.user_properties.append((NOT_GRADED, report.longrepr))
        return
    where = impl.student_location(call.excinfo.value)
    if where:
        report.user_properties.append((STUDENT_CODE, where))
    error = call.excinfo.value
    if isinstance(error, NameError) and getattr(error, "name", None):
        skipped = impl.skipped_binding(error.name)
        if skipped is not None:
            note = f"`{error.name}` is bound only by {skipped.where} (`{skipped.code}`), skipped: {skipped.reason}"
            report.user_properties.append((NOTE, note))


@contextlib.contextmanager
def _call_errors_fail() -> Iterator[None]:
    """A graded call that failed in the sandbox (spec/sandbox/errors.py) fails its test with the sandbox's line."""
    try:
        yield
    except CallError as err:
        failure = str(err)
    else:
        return
    pytest.fail(failure, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _call_errors_fail():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _call_errors_fail():
        return (yield)
