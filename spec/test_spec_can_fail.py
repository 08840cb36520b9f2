"""The spec can fail: run on each deliberately broken implementation in `spec/broken/`,
the questions it breaks must fail, and a missing name must fail as such, not as a
collection error."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
Q29 = "spec/test_q29_q30_backprop_deep.py"

# broken implementation -> (what to run, the modules or tests that must fail)
CASES = {
    "normalize_to_0_1": (["spec/test_q21_normalize.py", "spec/test_q24_tensors.py"], ["test_q21", "test_q24"]),
    "wrong_layer_size": (["spec/test_q26_lenet.py", "spec/test_q27_parameters.py"], ["test_q26", "test_q27"]),
    "no_momentum": (
        [f"{Q29}::test_one_epoch_step_is_sgd_with_momentum_on_cross_entropy"],
        ["test_one_epoch_step_is_sgd_with_momentum"],
    ),
    "no_reshuffle": (
        [f"{Q29}::test_reshuffled_every_epoch_in_ceil_n_over_b_minibatches"],
        ["test_reshuffled_every_epoch"],
    ),
    "drops_images": (["spec/test_q22_layout.py", "spec/test_q24_tensors.py"], ["test_q22", "test_q24"]),
    "transposed_layout": (["spec/test_q22_layout.py"], ["test_q22"]),
    "missing_lenet": (["spec/test_q26_lenet.py"], ["test_q26"]),
}


def run_spec(impl: str, targets: list[str], tmp_path: Path) -> tuple[int, list[tuple[str, str]]]:
    """Run pytest on `targets` against `impl`; return its exit code and the (test id, message) of each failure."""
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    command = [
        sys.executable, "-m", "pytest", *targets, "--impl", impl, "-m", "not cuda", "-q",
        "-p", "no:xdist", "-p", "no:cacheprovider", f"--junitxml={report}",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"pytest on {impl} wrote no report:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    failures = []
    for case in ET.parse(report).iter("testcase"):
        for problem in (*case.iter("failure"), *case.iter("error")):
            failures.append((f"{case.get('classname')}.{case.get('name')}", problem.get("message") or ""))
    return proc.returncode, failures


@pytest.mark.parametrize("broken", sorted(CASES))
def test_broken_implementation_fails_the_questions_it_breaks(broken: str, tmp_path: Path) -> None:
    targets, must_fail = CASES[broken]
    code, failures = run_spec(f"spec.broken.{broken}", targets, tmp_path)
    assert code == 1, f"pytest on spec.broken.{broken} exited {code}, expected 1 (tests failed)"
    failed = [test for test, _ in failures]
    for expected in must_fail:
        assert any(expected in test for test in failed), f"spec.broken.{broken}: nothing in {expected} failed"


def test_a_missing_name_fails_its_tests_with_a_clear_message(tmp_path: Path) -> None:
    code, failures = run_spec("spec.broken.missing_lenet", ["spec/test_q26_lenet.py"], tmp_path)
    assert code == 1, f"exit code {code}: a missing name must fail tests (1), not break collection (2)"
    assert failures, "no test failed although LeNet is missing"
    messages = {message for _, message in failures}
    assert all("LeNet is not defined in spec.broken.missing_lenet" in m for m in messages), f"messages: {messages}"
