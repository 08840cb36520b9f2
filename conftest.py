"""Project-wide pytest set-up: the implementation under test, grading, devices, seeds, shared data.

- `--impl` (or $MNIST_LAB_IMPL) picks the implementation: a notebook, a script or a module (mnist_lab by
  default). On anything but mnist_lab only the questions run (the package's own tests are deselected),
  in a temporary working folder, and the run ends with a table of the questions' verdicts.
- `--grade-report PATH` writes that table as PATH.json and PATH.md (spec/grading.py).
- `--train-seed S` seeds the training runs of Q29-Q33 (0 by default; the bounds hold for every seed).
- Every test starts from generators seeded by its own id, so its draws, and its verdict, are the
  same on every run, under xdist too; hypothesis is derandomised.
- Tests marked `cuda` are skipped with the reason "CUDA not available" where there is no GPU; under
  xdist they all go to one worker, so `pytest -n auto` does not crowd a single GPU. A test that
  breaks the process's CUDA context is named once; the `cuda` tests after it are skipped with
  that name as the reason (spec/cuda_health.py).
- Benchmarks run only with `--benchmark-only`: the test suite stays fast and xdist-safe.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from spec import cells, notebook
from spec.contract import question_of
from spec.cuda_health import CudaHealth
from spec.grading import GradeReport
from spec.impl import IMPL_ENV, grading, implementation_name, is_file, load_implementation, student_location
from spec.measure import Measure

pytest_plugins = ["pytester"]  # spec/test_spec_cuda_health.py runs pytest inside pytest

CUDA = torch.cuda.is_available()
TRAINING_TIMEOUT = 1800  # seconds for a `training` test: 10 epochs of a plain loop on a slow 2-core CPU
_HYPOTHESIS_DIR = pytest.StashKey[str]()
CUDA_HEALTH = "mnist-lab-cuda-health"

# Derandomised: the same examples every run. One failure reported, so that its first line says what is wrong.
settings.register_profile("spec", derandomize=True, database=None, report_multiple_bugs=False)
settings.load_profile("spec")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mnist-lab")
    group.addoption(
        "--impl",
        default=None,
        help=f"the implementation to grade: a notebook, a script or a module (default: ${IMPL_ENV}, else mnist_lab)",
    )
    group.addoption("--grade-report", metavar="PATH", help="write each question's verdict to PATH.json and PATH.md")
    group.addoption("--train-seed", type=int, default=0, help="seed of the training runs of Q29-Q33 (default 0)")
    group.addoption(
        "--report", metavar="DIR", help="write DIR/report.md and DIR/report.html: printed against measured, with plots"
    )
    group.addoption("--report-sweep", metavar="PATH", help="with --report: a seed sweep's JSON, plotted as a histogram")
    group.addoption(
        "--report-benchmarks", metavar="PATH", help="with --report: pytest-benchmark's JSON, plotted per device"
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--impl")
    if name:
        if is_file(name):
            path = Path(config.invocation_params.dir, name).resolve()
            if not path.is_file():
                raise pytest.UsageError(f"--impl {name}: no such file")
            name = str(path)
        os.environ[IMPL_ENV] = name
    if not is_file(implementation_name()):
        try:
            load_implementation()
        except ImportError as err:
            raise pytest.UsageError(f"cannot import the implementation {implementation_name()!r}: {err}") from None
    config.pluginmanager.register(CudaHealth(), CUDA_HEALTH)
    if grading() or config.getoption("--grade-report"):
        config.pluginmanager.register(GradeReport(config), "mnist-lab-grade-report")
    if config.getoption("--report") or config.getoption("--report-sweep") or config.getoption("--report-benchmarks"):
        from spec.report import SpecReport  # matplotlib, the report extra, only here

        config.pluginmanager.register(SpecReport.from_config(config), "mnist-lab-report")
    # Hypothesis keeps its files under the current folder: give each process its own, outside the repo.
    config.stash[_HYPOTHESIS_DIR] = tempfile.mkdtemp(prefix="mnist-lab-hypothesis-")
    set_hypothesis_home_dir(config.stash[_HYPOTHESIS_DIR])
    # One GPU, many workers: `-n` alone means --dist load; make it loadgroup, so that the GPU
    # tests share one worker and so do the tests that share a training run (the xdist_group marks).
    # The controller schedules by `dist`; each worker decides by `loadgroup` whether to tag
    # its test ids with their group, so both are set.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if hasattr(config, "workerinput"):
        config.option.loadgroup = True
    # Two workers on two cores, each with torch's two threads, would fight for the cores.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HYPOTHESIS_DIR in config.stash:
        shutil.rmtree(config.stash[_HYPOTHESIS_DIR], ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    gpu = f"yes ({torch.cuda.get_device_name(0)})" if CUDA else "no"
    lines = [
        f"torch {torch.__version__}, numpy {np.__version__}, CUDA available: {gpu}",
        f"implementation under test: {implementation_name()}",
    ]
    if grading():
        lines.append("grading: only the questions run; the package's own tests are deselected")
    return lines


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if grading():
        others = [item for item in items if question_of(item.path.name) is None]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if question_of(item.path.name) is not None]
    benchmarking = config.getoption("benchmark_only", default=False)
    for item in items:
        if "training" in item.keywords:
            item.add_marker(pytest.mark.timeout(TRAINING_TIMEOUT))
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.xdist_group("cuda"), append=False)  # first: it wins over others
            if not CUDA:
                item.add_marker(pytest.mark.skip(reason="CUDA not available"))
        if "benchmark" in getattr(item, "fixturenames", ()) and not benchmarking:
            item.add_marker(pytest.mark.skip(reason="a benchmark: run with --benchmark-only"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Name the place in the student's code where a failure happened; say when it was skipped code."""
    outcome = yield
    if call.excinfo is None or not is_file(implementation_name()):
        return
    report = outcome.get_result()
    where = student_location(call.excinfo.tb)
    if where:
        report.user_properties.append(("student_code", where))
    error = call.excinfo.value
    built = load_implementation().notebook
    if isinstance(error, NameError) and built is not None and getattr(error, "name", None):
        skipped = built.skipped_binding(error.name)
        if skipped is not None:
            report.user_properties.append(
                (
                    "note",
                    f"`{error.name}` is bound only by {skipped.where} (`{skipped.code}`), skipped: {skipped.reason}",
                )
            )


@pytest.fixture(autouse=True)
def _seeded_rng(request: pytest.FixtureRequest):
    """Seed every generator from the test's own id, and hand back the states it found afterwards:
    CUDA's only around `cuda` tests, and only while CUDA still works."""
    health: CudaHealth = request.config.pluginmanager.get_plugin(CUDA_HEALTH)
    uses_cuda = CUDA and "cuda" in request.keywords
    py_state, np_state, cpu_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if uses_cuda else None
    cells.seed_everything(zlib.crc32(request.node.nodeid.encode()))
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(cpu_state)
    if cuda_states is not None and health.ok:
        torch.cuda.set_rng_state_all(cuda_states)


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Measure:
    """`measure(name, value, device)` and `measure.series(kind, ...)`: what this test measured, for --report."""
    return Measure(request.node)


@pytest.fixture(scope="session")
def _student_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("student-cwd")


@pytest.fixture(autouse=True)
def _student_cwd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Graded code runs in a temporary folder: whatever files it writes land there."""
    if grading():
        monkeypatch.chdir(request.getfixturevalue("_student_folder"))


@pytest.fixture(
    params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)],
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device-generic test runs once on the CPU and once, `cuda`-marked, on the GPU."""
    return torch.device(request.param)


class Splits(Mapping[str, Any]):
    """ "training" and "testing", each prepared on first use: a run that needs one split loads one."""

    def __init__(self, prepare: Callable[[str], Any]) -> None:
        self._prepare, self._done = prepare, {}

    def __getitem__(self, split: str) -> Any:
        if split not in ("training", "testing"):
            raise KeyError(split)
        if split not in self._done:
            self._done[split] = self._prepare(split)
        return self._done[split]

    def __iter__(self) -> Iterator[str]:
        return iter(("training", "testing"))

    def __len__(self) -> int:
        return 2


@pytest.fixture(scope="session")
def mnist_columns() -> Splits:
    """Both splits through the course loader (MNISTtools.load): (784, N) uint8 images, (N,) labels."""
    from spec.impl import impl

    return Splits(impl.load)


@pytest.fixture(scope="session")
def normalised(mnist_columns: Splits) -> Splits:
    """Cells [29]-[30]: each split's columns through the implementation's normalize_MNIST_images."""
    from spec.impl import impl

    return Splits(lambda split: np.asarray(impl.normalize_MNIST_images(mnist_columns[split][0])))


@pytest.fixture(scope="session")
def mnist(mnist_columns: Splits) -> Splits:
    """Both splits prepared as the printed cells prepare them, with the printed normalisation:
    (N, 1, 28, 28) float32 images and (N,) int64 labels, for the questions after Q24. Tests must not
    modify them."""
    return Splits(lambda split: cells.as_tensors(*mnist_columns[split], cells.normalize_as_printed))


@pytest.fixture(scope="session")
def printed_run(request: pytest.FixtureRequest, mnist):
    """`run(device, epochs)`: the implementation's LeNet trained by its backprop_deep with the printed
    recipe (`spec.cells.train_as_printed`), seeded with --train-seed; memoised per device and length,
    failures included, so the tests that share a run train once. Tests that use it on the CPU share
    the xdist group "backprop_deep"."""
    seed = request.config.getoption("--train-seed")
    runs: dict[tuple[str, int], cells.PrintedRun | str] = {}

    def run(device: torch.device, epochs: int) -> cells.PrintedRun:
        key = (device.type, epochs)
        if key not in runs:
            try:
                runs[key] = cells.train_as_printed(mnist, device, epochs, seed)
            except BaseException as err:
                runs[key] = f"{type(err).__name__}: {notebook.one_line(err)}"
                raise
        if isinstance(runs[key], str):
            pytest.fail(
                f"the {epochs}-epoch run on {device.type} failed in an earlier test: {runs[key]}", pytrace=False
            )
        return runs[key]

    return run
