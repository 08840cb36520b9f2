"""The spec's fixtures: the implementation under test, seeded generators, devices, MNIST as the cells prepare it.

Every test starts from generators seeded by its own id, so its draws, and its verdict, are the same on
every run, under xdist too.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spec.harness import cells, prepared
from spec.harness.impl import Implementation
from spec.harness.measure import Measure
from spec.harness.plugin import CUDA, session
from spec.harness.text import one_line

LONGEST = 10  # epochs: Q32-Q33's run, whose first 3 are Q29-Q31's where the loop allows


def seed_of(nodeid: str) -> int:
    """A test's seed: crc32 of its id as it read when every module sat in spec/ itself (`spec/test_q21_...py::
    test_...`), so that moving a module to another folder changes none of its draws, and no verdict or message."""
    path, sep, name = nodeid.partition("::")
    return zlib.crc32(f"spec/{Path(path).name}{sep}{name}".encode())


@pytest.fixture(autouse=True)
def _seeded_rng(request: pytest.FixtureRequest) -> Iterator[None]:
    """Seed every generator from the test's own id, and hand back the states it found afterwards:
    CUDA's only around `cuda` tests, and only while CUDA still works."""
    health = session(request.config).cuda
    uses_cuda = CUDA and "cuda" in request.keywords
    py_state, np_state, cpu_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if uses_cuda else None
    cells.seed_everything(seed_of(request.node.nodeid))
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(cpu_state)
    if cuda_states is not None and health.ok:
        torch.cuda.set_rng_state_all(cuda_states)


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Implementation:
    """The implementation under test (--impl): ask it for the contract's names, `impl.LeNet`."""
    return session(request.config).impl


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
    if session(request.config).impl.grading:
        monkeypatch.chdir(request.getfixturevalue("_student_folder"))


@pytest.fixture
def no_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """No display: drawing must not need one (`pytest.mark.usefixtures("no_screen")`)."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)


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
def mnist_columns(impl: Implementation) -> Splits:
    """Both splits through the course loader (MNISTtools.load): (784, N) uint8 images, (N,) labels; when
    grading, the prepared files, which the course's loader wrote (spec/harness/prepared.py)."""
    if impl.grading:
        return Splits(functools.partial(prepared.columns, impl.data))
    return Splits(impl.load)


@pytest.fixture(scope="session")
def normalised(impl: Implementation, mnist_columns: Splits) -> Splits:
    """Cells [29]-[30]: each split's columns through the implementation's normalize_MNIST_images."""
    return Splits(lambda split: np.asarray(impl.normalize_MNIST_images(mnist_columns[split][0])))


@pytest.fixture(scope="session")
def mnist(impl: Implementation, mnist_columns: Splits) -> Splits:
    """Both splits prepared as the printed cells prepare them, with the printed normalisation:
    (N, 1, 28, 28) float32 images and (N,) int64 labels, for the questions after Q24; when grading, mapped
    from the prepared files, which the notebook's worker maps too. Tests must not modify them."""
    if impl.grading:
        return Splits(functools.partial(prepared.tensors, impl.data))
    return Splits(lambda split: cells.as_tensors(*mnist_columns[split], cells.normalize_as_printed))


@pytest.fixture(scope="session")
def printed_run(request: pytest.FixtureRequest, impl: Implementation, mnist: Splits):
    """`run(device, epochs)`: the implementation's LeNet trained by its backprop_deep with the printed
    recipe (`spec.harness.cells.train_as_printed`), seeded with --train-seed; memoised per device and
    length, failures included, so the tests that share a run train once. A shorter run is the first
    epochs of the LONGEST one where the loop's first epochs do not depend on T (cells.first_epochs_differ);
    its `source` says which it is. Tests that use it share the xdist group "backprop_deep"."""
    seed = session(request.config).train_seed
    runs: dict[tuple[str, int], cells.PrintedRun | str] = {}

    def run(device: torch.device, epochs: int) -> cells.PrintedRun:
        key = (device.type, epochs)
        if key not in runs:
            try:
                runs[key] = shorter(device, epochs) or cells.train_as_printed(impl, mnist, device, epochs, seed)
            except BaseException as err:
                runs[key] = f"{type(err).__name__}: {one_line(err)}"
                raise
        if isinstance(runs[key], str):
            pytest.fail(
                f"the {epochs}-epoch run on {device.type} failed in an earlier test: {runs[key]}", pytrace=False
            )
        return runs[key]

    def shorter(device: torch.device, epochs: int) -> cells.PrintedRun | None:
        if epochs >= LONGEST:
            return None
        why = cells.first_epochs_differ(impl, mnist, device, epochs, seed)
        if why is None:
            try:
                longer = run(device, LONGEST)
            except (Exception, pytest.fail.Exception):  # the long run's failure is its own tests'; this one trains
                longer = None
            taken = longer.first_epochs(epochs) if longer is not None else None
            if taken is not None:
                return taken
            why = f"the {LONGEST}-epoch run did not give its epoch {epochs}"
        return dataclasses.replace(cells.train_as_printed(impl, mnist, device, epochs, seed),
                                   source=f"a run of its own: {why}")  # fmt: skip

    return run
