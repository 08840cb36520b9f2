"""The guard around each graded function (spec/harness/impl.py): student code cannot stop the run. In-process and
quick; meta_tests/test_grading.py shows the same on whole notebooks."""

from __future__ import annotations

import sys

import pytest

from spec.harness.contract import CONTRACT
from spec.harness.impl import OUTPUT_LIMIT
from spec.harness.impl import PackageImplementation as Package


@pytest.fixture
def fresh() -> Package:
    """The reference package, with no function remembered as hung."""
    return Package()


def test_exit_is_a_failure_naming_the_function(fresh: Package) -> None:
    guarded = fresh.guarded("backprop_deep", lambda: sys.exit(3))
    with pytest.raises(pytest.fail.Exception, match=r"^backprop_deep called exit\(\) or sys.exit\(3\): a graded"):
        guarded()


def test_a_function_that_ran_past_the_time_limit_is_not_called_again(fresh: Package) -> None:
    calls = []

    def hangs() -> None:
        calls.append(1)
        pytest.fail("Timeout (>120.0s) from pytest-timeout.")  # what pytest-timeout's signal raises

    guarded = fresh.guarded("backprop_deep", hangs)
    with pytest.raises(pytest.fail.Exception, match="Timeout"):
        guarded()
    with pytest.raises(pytest.fail.Exception, match=r"^backprop_deep did not return within the time limit in spec/"):
        guarded()
    assert calls == [1], f"called {len(calls)} times"


def test_output_past_the_limit_fails_and_is_cut(fresh: Package, capsys: pytest.CaptureFixture[str]) -> None:
    guarded = fresh.guarded("backprop_deep", lambda: print("x" * (2 * OUTPUT_LIMIT)))
    with pytest.raises(pytest.fail.Exception, match=r"^backprop_deep flooded stdout: 2,000,001 characters"):
        guarded()
    assert len(capsys.readouterr().out) == OUTPUT_LIMIT, "more than the limit reached the captured output"


def test_output_within_the_limit_passes_through(fresh: Package, capsys: pytest.CaptureFixture[str]) -> None:
    assert fresh.guarded("backprop_deep", lambda: print("[1,   100] loss: 2.301") or 7)() == 7
    assert capsys.readouterr().out == "[1,   100] loss: 2.301\n"


def test_only_the_contract_can_be_asked_for(fresh: Package) -> None:
    with pytest.raises(AttributeError, match="train is not in the contract"):
        fresh.train  # noqa: B018 (the attribute access is the test)
    assert set(CONTRACT) == {"normalize_MNIST_images", "LeNet", "backprop_deep", "load", "show"}
