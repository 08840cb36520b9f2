"""The package as a new user installs it: a wheel built from this checkout, installed away from it,
runs offline on the MNIST it carries (no --data, no $MNIST_LAB_DATA, no checkout beside it), and a
student's check() runs from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mnist_lab.data import DATA_ENV, FILES
from spec.gradescope.build import build_wheel

# The data files a wheel must carry: the four IDX files and their checksums.
CARRIED = sorted([f"{name}.gz" for pair in FILES.values() for name in pair] + ["SHA256SUMS"])


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as the Gradescope autograder builds it: from a copy of the checkout's sources."""
    pytest.importorskip("setuptools", minversion="68", reason="the test extra's setuptools builds the wheel")
    return build_wheel(tmp_path_factory.mktemp("wheels"))


def test_the_wheel_carries_the_embedded_mnist(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    carried = sorted(
        Path(n).name for n in names if n.startswith("mnist_lab/embedded_mnist/") and n.endswith(("gz", "SUMS"))
    )
    assert carried == CARRIED, f"{wheel.name} carries {carried} of the data, not {CARRIED}"


@pytest.mark.parametrize(("dataset", "label"), [("training", 5), ("testing", 7)])
def test_the_installed_package_runs_offline_from_any_folder(
    wheel: Path, tmp_path: Path, dataset: str, label: int
) -> None:
    """Installed by pip into a folder of its own, then run from an empty one: the checkout is not on
    the path, and the data it reads is the copy inside the installed package, checksums checked."""
    site = tmp_path / "site"
    run(
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "-q",
        "--target",
        site,
        wheel,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV}
    env["PYTHONPATH"] = str(site)  # first on the path: ahead of an editable install of the checkout
    where = run("-c", "import mnist_lab.data as d; print(d.__file__); print(d.EMBEDDED_DATA)", cwd=elsewhere, env=env)
    module, data = where.stdout.split()
    assert Path(module).is_relative_to(site), f"mnist_lab came from {module}, not from the installed {site}"
    assert Path(data).is_relative_to(site), f"the embedded data is {data}, not inside the installed package"
    shown = run("-m", "mnist_lab", "show", "--dataset", dataset, "--index", "0", cwd=elsewhere, env=env)
    assert f"{dataset} image 0: label {label}" in shown.stdout, f"show printed:\n{shown.stdout}\n{shown.stderr}"


def test_the_wheel_carries_the_questions_and_not_the_spec_s_own_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("spec/check.py", "spec/questions/test_q21_normalize.py", "spec/harness/plugin.py"):
        assert needed in names, f"{wheel.name} lacks {needed}: check() cannot run from an install"
    carried = sorted(n for n in names if n.startswith(("spec/meta_tests/", "spec/package_tests/", "spec/grade/")))
    assert not carried, f"{wheel.name} carries the spec's own tests or the batch grader: {carried[:5]}"


def test_check_runs_from_the_installed_wheel_in_any_folder(wheel: Path, tmp_path: Path) -> None:
    """A student's script in an empty folder, the wheel installed apart from the checkout: check() finds the
    question modules in the installed package and the student's definitions in the script's globals."""
    site = tmp_path / "site"
    run("-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", site, wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    student = (
        "import numpy as np\nimport spec\nfrom spec.check import check\n\n"
        "def normalize_MNIST_images(x):\n    return x.astype(np.float32) / 255\n\n"
        "result = check('Q21')\nprint(spec.__file__)\nprint(repr(result))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL", DATA_ENV))}
    env["PYTHONPATH"], env["OMP_NUM_THREADS"] = str(site), "1"
    (elsewhere / "student.py").write_text(student)
    out = run("student.py", cwd=elsewhere, env=env).stdout
    where = next(line for line in out.splitlines() if line.endswith("__init__.py"))
    assert Path(where).is_relative_to(site), f"spec came from {where}, not from the installed {site}"
    assert "Q21       failed" in out, f"check('Q21') did not fail Q21:\n{out}"
    assert "not 2 v / 255 - 1" in out, f"check('Q21') did not give the spec's message:\n{out}"
