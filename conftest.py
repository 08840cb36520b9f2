"""Project-wide pytest set-up: the implementation under test, devices, markers, RNG hygiene.

- `--impl MODULE` (or $MNIST_LAB_IMPL) picks the implementation the spec tests; mnist_lab by default.
- Tests marked `cuda` are skipped with the reason "CUDA not available" where there is no GPU; under
  xdist they all go to one worker, so `pytest -n auto` does not crowd a single GPU.
- Each test gets back the RNG state it started with, so no test's draws depend on another's.
- Benchmarks run only with `--benchmark-only`: the test suite stays fast and xdist-safe.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis.configuration import set_hypothesis_home_dir

from spec.impl import IMPL_ENV, implementation_name, load_implementation

CUDA = torch.cuda.is_available()
_HYPOTHESIS_DIR = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        default=None,
        help=f"module implementing the assignment (default: ${IMPL_ENV}, else mnist_lab)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--impl"):
        os.environ[IMPL_ENV] = config.getoption("--impl")
    try:
        load_implementation()
    except ImportError as err:
        raise pytest.UsageError(f"cannot import the implementation {implementation_name()!r}: {err}") from None
    # Hypothesis keeps its files under the current folder: give each process its own, outside the repo.
    config.stash[_HYPOTHESIS_DIR] = tempfile.mkdtemp(prefix="mnist-lab-hypothesis-")
    set_hypothesis_home_dir(config.stash[_HYPOTHESIS_DIR])
    # One GPU, many workers: `-n` alone means --dist load; make it loadgroup, so that the GPU
    # tests share one worker and each training seed's tests share one (the xdist_group marks).
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
    return [
        f"torch {torch.__version__}, numpy {np.__version__}, CUDA available: {gpu}",
        f"implementation under test: {implementation_name()}",
    ]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    benchmarking = config.getoption("benchmark_only", default=False)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.xdist_group("cuda"), append=False)  # first: it wins over others
            if not CUDA:
                item.add_marker(pytest.mark.skip(reason="CUDA not available"))
        if "benchmark" in getattr(item, "fixturenames", ()) and not benchmarking:
            item.add_marker(pytest.mark.skip(reason="a benchmark: run with --benchmark-only"))


@pytest.fixture(autouse=True)
def _isolated_rng():
    """Hand each test the RNG state it found and restore it afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if CUDA else []):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


@pytest.fixture(
    params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)],
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device-generic test runs once on the CPU and once, `cuda`-marked, on the GPU."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def mnist_columns() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits through the implementation's course loader: (784, N) uint8 images, (N,) labels."""
    from spec.impl import impl

    return {split: impl.load(split) for split in ("training", "testing")}


@pytest.fixture(scope="session")
def mnist() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits as the implementation's tensors: (N, 1, 28, 28) float32 images, (N,) int64 labels.

    Loaded once per worker; tests must not modify them.
    """
    from spec.impl import impl

    return {split: impl.load_tensors(split) for split in ("training", "testing")}


@pytest.fixture(scope="session")
def default_training(mnist):
    """`run(device, seed, epochs)`: the default recipe trained for `epochs`, with the test
    accuracy after each epoch; memoised, so Q31-Q33 share one run per device, seed and length.

    Tests that use it carry `xdist_group(f"train-seed{seed}")`, which keeps each
    seed's runs on one worker while the seeds train in parallel.
    """
    from spec.impl import impl

    xtrain, ltrain = mnist["training"]
    xtest, ltest = mnist["testing"]
    runs: dict[tuple[str, int, int], TrainedRun] = {}

    def run(device: torch.device, seed: int, epochs: int) -> TrainedRun:
        key = (device.type, seed, epochs)
        if key not in runs:
            accuracies: list[float] = []
            result = impl.train(
                xtrain, ltrain, recipe=impl.RECIPES["default"], epochs=epochs, seed=seed, device=device, log=None,
                on_epoch=lambda epoch, progress: accuracies.append(impl.evaluate(progress.net, xtest, ltest)),
            )  # fmt: skip
            runs[key] = TrainedRun(result.net, result.loss_log, accuracies)
        return runs[key]

    return run


@dataclass(frozen=True)
class TrainedRun:
    net: torch.nn.Module
    loss_log: list[list[float]]  # [epoch, minibatch, mean loss] every 100 minibatches
    accuracies: list[float]  # test accuracy after each epoch
