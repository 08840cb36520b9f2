"""A failure that breaks CUDA names itself once, instead of erroring every GPU test after it.

A device-side assert (a kernel indexing out of bounds, say) leaves the process's CUDA context
unusable: every later CUDA call in that process fails with the same error. A CUDA-graph capture
that fails half-way leaves CUDA's random generator unusable in the same way. After each `cuda`
test, `CudaHealth` asks the device for a random number and waits for it. Once that fails, the
test that broke it keeps its own report (failed), every later `cuda` test in the process is
skipped with one reason that names that test, and the tests that do not use CUDA run on:
`torch.manual_seed`, which seeds every device, stops seeding CUDA in this process, so that it
works for them. Under xdist the `cuda` tests share one worker (spec/harness/plugin.py), so this stops the
GPU group there.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import pytest
import torch

from spec.harness.text import one_line


def _draw_and_wait() -> None:
    """A kernel, the generator and a synchronisation: each fails once CUDA is broken."""
    torch.rand(1, device="cuda")
    torch.cuda.synchronize()


def _stop_seeding_cuda() -> None:
    """Make torch.manual_seed seed the CPU alone, for good, in this process, whose CUDA is dead."""
    torch.cuda.manual_seed_all = lambda seed: None


class CudaHealth:
    """The plugin. `probe` raises once CUDA is broken; `on_broken` runs once when it first does."""

    def __init__(
        self, probe: Callable[[], None] = _draw_and_wait, on_broken: Callable[[], None] = _stop_seeding_cuda
    ) -> None:
        self.probe, self.on_broken = probe, on_broken
        self.broken_by: str | None = None  # the test after which CUDA stopped working, and how

    @property
    def ok(self) -> bool:
        return self.broken_by is None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.broken_by is not None and "cuda" in item.keywords:
            pytest.skip(f"not run: CUDA is unusable in this process since {self.broken_by}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Generator[None]:
        yield
        if call.when != "call" or "cuda" not in item.keywords or self.broken_by is not None:
            return
        try:
            self.probe()
        except RuntimeError as err:  # torch.AcceleratorError, or a plain RuntimeError from older releases
            self.broken_by = f"{item.nodeid} failed with: {one_line(err)}"
            self.on_broken()
