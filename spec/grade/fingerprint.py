"""What a grade depends on besides the submission: the spec's code, torch's version, the questions and
pytest's arguments, hashed (`fingerprint`); a batch run again keeps a grade only where it is unchanged, and
the autograder's zip carries the same files (`grading_files`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent
NOT_GRADING = ("meta_tests", "package_tests", "benchmarks", "__pycache__")  # spec/ folders grading does not use


def fingerprint(questions: Sequence[str], pytest_args: Sequence[str]) -> str:
    """What a grade depends on besides the submission: the spec's code, torch's version, the questions and
    pytest's arguments, hashed; a batch rerun keeps a grade only where it is unchanged."""
    digest = hashlib.sha256("\0".join([torch_version(), *questions, "|", *pytest_args]).encode())
    for path in grading_files():
        digest.update(path.relative_to(SPEC).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def grading_files() -> list[Path]:
    """The spec's files that grading runs or reads: its code and its JSON, without the spec's own tests."""
    return [
        path
        for path in sorted(SPEC.rglob("*"))
        if path.suffix in (".py", ".json") and path.is_file()
        and not any(part in NOT_GRADING for part in path.relative_to(SPEC).parts)
    ]  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def torch_version() -> str:
    return importlib.metadata.version("torch")


