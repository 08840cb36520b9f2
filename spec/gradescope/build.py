"""autograder.zip for Gradescope: setup.sh, run_autograder, the rubric, pinned requirements, this project's
wheel (mnist_lab with the embedded MNIST) and the spec it grades with."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from spec.grade.batch import SPEC, grading_files
from spec.grade.batch import torch_version as installed_torch
from spec.gradescope.rubric import Rubric

HERE = Path(__file__).resolve().parent
REPO = SPEC.parent
PINNED = ("numpy", "pytest", "pytest-timeout", "hypothesis", "nbformat", "tqdm")  # what grading imports, and torch


class BuildError(Exception):
    """The zip cannot be built: one line."""


def requirements() -> str:
    """The spec's tools at the versions installed here, where it was tested."""
    return "".join(f"{name}=={importlib.metadata.version(name)}\n" for name in PINNED)


def torch_version() -> str:
    """The torch installed here, without its local build tag (2.13.0+cpu -> 2.13.0): what setup.sh pins."""
    return installed_torch().split("+")[0]


def build(out: Path, rubric: Rubric, torch_index: str | None = None) -> list[str]:
    """Write `out` (atomically); return the names in it."""
    with tempfile.TemporaryDirectory(prefix="mnist-lab-autograder-") as folder:
        wheel = build_wheel(Path(folder))
        setup = (HERE / "setup.sh").read_text(encoding="utf-8")
        setup = setup.replace("@TORCH@", torch_version()).replace("@WHEEL@", wheel.name)
        setup = setup.replace(" @TORCH_INDEX@", f" --index-url {torch_index}" if torch_index else "")
        part = out.with_name(f".{out.name}.part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as archive:
            _add(archive, "setup.sh", setup, executable=True)
            _add(archive, "run_autograder", (HERE / "run_autograder").read_text(encoding="utf-8"), executable=True)
            _add(archive, "rubric.toml", rubric.to_toml())
            _add(archive, "requirements.txt", requirements())
            archive.write(wheel, wheel.name)
            for path in [REPO / "conftest.py", REPO / "pyproject.toml", *grading_files()]:
                archive.write(path, path.relative_to(REPO).as_posix())
            names = archive.namelist()
        os.replace(part, out)
    return names


def build_wheel(folder: Path) -> Path:
    """The project's wheel (mnist_lab, and the spec's questions for check()), in `folder`, built from a copy
    of the checkout's sources there: a build writes into its source tree, and two at once in one tree break
    each other."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for package in ("mnist_lab", "spec"):  # pyproject.toml's packages say which of spec's travel
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "mnist", source / "data" / "mnist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
               "-w", str(folder), "."]  # fmt: skip
    proc = subprocess.run(command, cwd=source, capture_output=True, text=True, check=False)
    wheels = list(folder.glob("mnist_lab-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise BuildError(f"the wheel could not be built: {last}")
    return wheels[0]


def _add(archive: zipfile.ZipFile, name: str, text: str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)
