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
from collections.abc import Callable, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from spec.grade.fingerprint import SPEC, grading_files
from spec.grade.fingerprint import torch_version as installed_torch
from spec.grade.rubric import Rubric

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: its backport
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
REPO = SPEC.parent
PINNED = ("numpy", "pytest", "pytest-timeout", "hypothesis", "nbformat", "tqdm")  # what grading imports, and torch
BACKPORTS = {"tomli": "3.11"}  # what the Pythons before that one need: the rubric's TOML reader (rubric.py)
# The Pythons grading runs on, oldest first: pyproject.toml's requires-python, setup.sh's choice, CI's runs.
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


class BuildError(Exception):
    """The zip cannot be built: one line."""


def requirements(
    distribution: Callable[[str], importlib.metadata.Distribution] = importlib.metadata.distribution,
) -> str:
    """The spec's tools at the versions installed here, where it was tested, on each supported Python that
    the installed release supports (its Requires-Python); on the others, the range pyproject.toml declares, up
    to that version, from which pip takes the newest release that supports the image's Python (CI tests the
    same resolution on the oldest Python). Environment markers say which line holds on which Python."""
    declared = _declared()
    lines = []
    for name in (*PINNED, *BACKPORTS):
        pythons = [p for p in SUPPORTED if name not in BACKPORTS or _version(p) < _version(BACKPORTS[name])]
        try:
            dist = distribution(name)
            version, supports = dist.version, SpecifierSet(dist.metadata["Requires-Python"] or "")
        except importlib.metadata.PackageNotFoundError:  # a backport this Python does not need
            version, supports = None, SpecifierSet()
        pinned = [p for p in pythons if version is not None and supports.contains(f"{p}.0")]
        others = [p for p in pythons if p not in pinned]
        if pinned:
            lines.append(_with_marker(f"{name}=={version}", pinned))
        if others:
            bounds = [str(declared[name])] if str(declared[name]) else []  # the range pyproject.toml declares
            bounds += [f"<={version}"] if version else []  # up to the version tested here
            lines.append(_with_marker(name + ",".join(bounds), others))
    return "".join(f"{line}\n" for line in lines)


def _declared() -> dict[str, SpecifierSet]:
    """Each requirement's versions as pyproject.toml declares them (its dependencies and test extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared: dict[str, SpecifierSet] = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        declared[canonicalize_name(requirement.name)] = requirement.specifier
    return {name: declared.get(canonicalize_name(name), SpecifierSet()) for name in (*PINNED, *BACKPORTS)}


def _with_marker(requirement: str, pythons: Sequence[str]) -> str:
    """`requirement` for these supported Pythons only: a marker bounded above or below where it can be."""
    if list(pythons) == list(SUPPORTED):
        return requirement
    if list(pythons) == list(SUPPORTED[-len(pythons) :]):
        return f'{requirement}; python_version >= "{pythons[0]}"'
    if list(pythons) == list(SUPPORTED[: len(pythons)]):
        return f'{requirement}; python_version < "{SUPPORTED[len(pythons)]}"'
    return f"{requirement}; " + " or ".join(f'python_version == "{p}"' for p in pythons)


def _version(python: str) -> tuple[int, ...]:
    return tuple(int(part) for part in python.split("."))


def torch_version() -> str:
    """The torch installed here, without its local build tag (2.13.0+cpu -> 2.13.0): what setup.sh pins."""
    return installed_torch().split("+")[0]


def build(out: Path, rubric: Rubric, torch_index: str | None = None) -> list[str]:
    """Write `out` (atomically); return the names in it."""
    with tempfile.TemporaryDirectory(prefix="mnist-lab-autograder-") as folder:
        wheel = build_wheel(Path(folder))
        setup = (HERE / "setup.sh").read_text(encoding="utf-8")
        setup = setup.replace("@TORCH@", torch_version()).replace("@WHEEL@", wheel.name)
        setup = setup.replace("@PYTHONS@", " ".join(reversed(SUPPORTED)))
        setup = setup.replace(" @TORCH_INDEX@", f" --index-url {torch_index}" if torch_index else "")
        part = out.with_name(f".{out.name}.part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as archive:
            _add(archive, "setup.sh", setup, executable=True)
            _add(archive, "run_autograder", run_autograder(rubric), executable=True)
            _add(archive, "rubric.toml", rubric.to_toml())
            _add(archive, "requirements.txt", requirements())
            archive.write(wheel, wheel.name)
            for path in [REPO / "conftest.py", REPO / "pyproject.toml", *grading_files()]:
                archive.write(path, path.relative_to(REPO).as_posix())
            names = archive.namelist()
        os.replace(part, out)
    return names


def run_autograder(rubric: Rubric) -> str:
    """run_autograder, with the built rubric's questions and points for the results.json it writes itself."""
    text = (HERE / "run_autograder").read_text(encoding="utf-8")
    return text.replace("@GRADED@", " ".join(rubric.graded)).replace("@TOTAL@", f"{rubric.total:g}")


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
