"""What `run_autograder` does on Gradescope: grade the one notebook in ROOT/submission and write
ROOT/results/results.json, always, whatever the notebook is or does.

The notebook is graded as the batch grader grades one (spec/grade/batch.py): the spec's questions in a
pytest process of their own, the student's code in its sandboxed worker. What cannot be graded (no
notebook, several, a file that is not one, a grading that failed) is a visible "Not gradable" test.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_lab.files import write_json
from spec.grade.rubric import Rubric, RubricError
from spec.grade.submission import found_in, grade_one
from spec.gradescope.results import not_gradable, results
from spec.harness import notebook
from spec.sandbox.client import self_check

RUBRIC = Path(__file__).resolve().parents[2] / "rubric.toml"  # beside spec/ in the autograder's source folder


class SubmissionError(Exception):
    """The submission cannot be graded: the message is one line for the student."""


class GraderError(Exception):
    """The autograder cannot grade anyone here (its sandbox does not start): one line for the course staff."""


def submission(folder: Path) -> Path:
    """The one notebook in the submission's folder (checkpoints left out), read far enough to know it is one."""
    if not folder.is_dir():
        raise SubmissionError(f"no submission folder at {folder}")
    found = found_in(folder, (".ipynb",))
    if not found:
        names = sorted(p.name for p in folder.rglob("*") if p.is_file())[:5]
        raise SubmissionError(f"no notebook (.ipynb) was submitted{': only ' + ', '.join(names) if names else ''}")
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(folder)) for p in found[:5])
        raise SubmissionError(f"{len(found)} notebooks were submitted ({listed}): submit one")
    try:
        notebook.plan(found[0])  # static: reads the file, runs none of it
    except notebook.NotebookError as err:
        raise SubmissionError(str(err)) from None
    return found[0]


def run(root: Path, timeout: float, rubric_path: Path = RUBRIC) -> dict[str, Any]:
    """Grade ROOT/submission, write ROOT/results/results.json, and return what was written."""
    start = time.perf_counter()
    rubric = Rubric()
    try:
        with _terminated_as_exit():
            rubric = Rubric.load(rubric_path) if rubric_path.is_file() else Rubric()
            notebook_path = submission(root / "submission")
            problem = self_check()  # a broken sandbox is the course's to fix, and no student's failure
            if problem is not None:
                raise GraderError(f"not graded: {problem}")
            graded = grade_one(notebook_path, timeout, ["--questions", ",".join(rubric.graded)])
            data = results(graded, rubric, time.perf_counter() - start)
    except RubricError as err:
        data = not_gradable(f"the autograder's rubric is wrong (the course staff must fix it): {err}", rubric,
                            time.perf_counter() - start)  # fmt: skip
    except (SubmissionError, GraderError) as err:
        data = not_gradable(str(err), rubric, time.perf_counter() - start)
    except BaseException as err:  # the autograder itself failed, or was stopped: still a results.json
        data = not_gradable(f"grading stopped: {type(err).__name__}: {err}", rubric, time.perf_counter() - start)
        _write(root, data)
        raise
    _write(root, data)
    return data


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (a platform's time limit) unwinds like an exit, so that results.json is still written."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"the autograder was terminated (signal {signum})")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write(root: Path, data: dict[str, Any]) -> None:
    (root / "results").mkdir(parents=True, exist_ok=True)
    write_json(root / "results" / "results.json", data)
