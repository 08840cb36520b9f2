"""The time a graded training test may take (spec/harness/budget.py): fitted to the machine, bounded."""

from __future__ import annotations

import pytest

from spec.harness import budget


def test_the_budget_is_ten_measured_epochs_times_the_margin_plus_slack() -> None:
    fitted = budget.Budget(epoch_seconds=8.0, ceiling=1800)
    assert fitted.seconds == pytest.approx(10 * 8.0 * budget.MARGIN + budget.SLACK), fitted.line()
    assert "8.0 s an epoch" in fitted.line(), fitted.line()


def test_a_slow_machine_gets_no_more_than_the_ceiling() -> None:
    assert budget.Budget(epoch_seconds=500.0, ceiling=1800).seconds == 1800


def test_the_measurement_takes_seconds_and_gives_a_plausible_epoch() -> None:
    measured = budget.measure(ceiling=1800, steps=5, warmup=1)
    assert 0.05 < measured.epoch_seconds < 600, f"one epoch of the printed loop measured at {measured.epoch_seconds} s"


def test_a_graded_training_test_gets_the_fitted_budget(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collected as grading collects it: the timeout mark on a `training` test is the budget, not 1800 s."""
    from spec.package_tests.support import REPO

    pytester.makeini("[pytest]\nmarkers =\n    training: trains\n    question(name): a question\n")
    pytester.makepyfile(
        test_t="import pytest\npytestmark = [pytest.mark.question('Q31'), pytest.mark.training]\n"
        "def test_x(request):\n    print('TIMEOUT', request.node.get_closest_marker('timeout').args[0])\n"
    )
    notebook = pytester.path / "nb.py"
    notebook.write_text("def normalize_MNIST_images(x):\n    return x\n")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess(
        "-p", "spec.harness.plugin", "-p", "spec.harness.fixtures", "-p", "no:cacheprovider", "-s", "--impl", "nb.py"
    )
    lines = [line.split("TIMEOUT ", 1)[1] for line in result.outlines if "TIMEOUT " in line]
    assert lines, result.stdout.str()[-2000:]
    seconds = float(lines[0].split()[0])
    assert budget.SLACK < seconds < 1800, f"a graded training test may run {seconds} s"
    result.stdout.fnmatch_lines(["training budget * s a test: 10 epochs of the printed loop at *"])


@pytest.mark.parametrize(("given", "limit"), [((), 120.0), (("-o", "timeout=30"), 30.0), (("--timeout", "7"), 7.0)])
def test_every_other_test_gets_the_plugins_limit_unless_pytest_timeout_is_told_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, given: tuple[str, ...], limit: float
) -> None:
    """No configuration file: the plugin's own TEST_TIMEOUT (check() runs so); pytest-timeout's option wins."""
    from spec.package_tests.support import REPO

    pytester.makepyfile(test_t="def test_x():\n    pass\n")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    common = ("-p", "spec.harness.plugin", "-p", "spec.harness.fixtures", "-p", "no:cacheprovider", "-c", "/dev/null")
    pytester.makeconftest(
        "def pytest_collection_finish(session):\n"
        "    for item in session.items:\n"
        "        marker = item.get_closest_marker('timeout')\n"
        "        print('LIMIT', marker.args[0] if marker else session.config.getini('timeout') or "
        "session.config.getoption('--timeout'))\n"
    )
    result = pytester.runpytest_subprocess(*common, "--collect-only", "-q", *given)
    lines = [line.split("LIMIT ", 1)[1] for line in result.outlines if line.startswith("LIMIT ")]
    assert lines, f"no limit printed: {result.stdout.str()[-1500:]}"
    assert float(lines[0]) == limit, f"the test's limit is {lines[0]} s, not {limit} s"
