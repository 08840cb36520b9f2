"""spec/harness/cuda_health.py: once a test breaks CUDA, the run names that test, not a cascade of errors.

The first test drives the plugin with a stand-in for the device that breaks after one test, so it
runs everywhere; the second breaks a real GPU with a device-side assert, in a separate pytest
process with the spec's plugin, and checks what the GPU runner would see.
"""

from __future__ import annotations

import re

import pytest

from spec.package_tests.support import REPO

INNER_TESTS = """
import pytest
import torch

@pytest.mark.cuda
def test_a_breaks_cuda():
    {breaks}

@pytest.mark.cuda
def test_b_needs_cuda():
    {works}

def test_c_cpu_only():
    torch.manual_seed(0)  # seeds every device: it must not fail on the broken CUDA
    assert torch.ones(2).sum().item() == 2
"""


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Each inner test's verdicts from -v's lines, joined by '+': "FAILED+ERROR" if its teardown errs too."""
    verdicts: dict[str, list[str]] = {}
    for line in result.outlines:
        match = re.search(r"::(test_\w+) (PASSED|FAILED|SKIPPED|ERROR)", line)
        if match:
            verdicts.setdefault(match[1], []).append(match[2])
    return {name: "+".join(found) for name, found in verdicts.items()}


def test_later_cuda_tests_are_skipped_naming_the_test_that_broke_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from spec.harness.cuda_health import CudaHealth

broken = []

def probe():
    if broken:
        raise RuntimeError("CUDA error: device-side assert triggered\\nmore detail")

def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs CUDA")
    config.pluginmanager.register(CudaHealth(probe, on_broken=lambda: None), "cuda-health")
"""
    )
    pytester.makepyfile(
        INNER_TESTS.format(
            breaks="import conftest; conftest.broken.append(1); raise AssertionError('index out of bounds')",
            works="pass",
        )
    )
    pytester.syspathinsert(REPO)
    result = pytester.runpytest_inprocess("-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1, passed=1)
    assert outcomes(result) == {
        "test_a_breaks_cuda": "FAILED",
        "test_b_needs_cuda": "SKIPPED",
        "test_c_cpu_only": "PASSED",
    }, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*not run: CUDA is unusable in this process since *test_a_breaks_cuda failed with: "
         "CUDA error: device-side assert triggered"]
    )  # fmt: skip


@pytest.mark.cuda
def test_a_device_side_assert_fails_one_test_and_skips_the_gpu_tests_after_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the spec's plugin and fixtures, as `pytest -m cuda` runs on a GPU runner: the test that trips the
    assert fails, its teardown does not error, the next GPU test is skipped naming it, the CPU test passes."""
    pytester.makepyfile(
        INNER_TESTS.format(
            breaks="torch.zeros(3, device='cuda').gather(0, torch.tensor([5], device='cuda')).sum().item()",
            works="assert torch.ones(2, device='cuda').sum().item() == 2",
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess(
        "-v", "-rs", "-p", "spec.harness.plugin", "-p", "spec.harness.fixtures", "-p", "no:cacheprovider", timeout=300
    )  # fmt: skip
    assert outcomes(result) == {
        "test_a_breaks_cuda": "FAILED",
        "test_b_needs_cuda": "SKIPPED",
        "test_c_cpu_only": "PASSED",
    }, result.stdout.str()
    result.assert_outcomes(failed=1, skipped=1, passed=1)  # and no errors, in teardown or set-up
    result.stdout.fnmatch_lines(["*not run: CUDA is unusable in this process since *test_a_breaks_cuda failed with:*"])
