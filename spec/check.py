"""check(): the spec's own question modules, run inside a student's notebook against its live definitions.

    from spec.check import check      # or: %load_ext spec.check, then %check Q21
    check("Q21")                      # a question; check() for every one the kernel's definitions allow

It runs `pytest` on spec/questions in the kernel's process, with the spec's plugin and fixtures and a
`LiveRun` (spec/harness/live.py) that hands them the kernel's objects as the implementation: the same tests
and messages as `pytest spec/questions --impl their.ipynb`, on the definitions as they stand now. A
question whose names the kernel lacks is not run: the answer says which names are missing. Training
questions show their progress and stop cleanly with the kernel's stop button. No configuration file, no
conftest.py and no working folder is read: it runs the same from a checkout and from an installed wheel.
"""

from __future__ import annotations

import atexit
import inspect
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import spec.questions
from spec.harness.contract import QUESTIONS, STUDENT_NAMES, QuestionsError, parse_questions
from spec.harness.live import LiveRun, Watcher
from spec.reports.in_kernel import CheckResult, JupyterWatcher, TextWatcher

QUESTIONS_FOLDER = Path(spec.questions.__file__).parent
_data_folder: Path | None = None  # MNIST prepared once a kernel (spec/harness/prepared.py), removed at exit


def check(
    questions: str | Iterable[str] | None = None,
    *,
    train: bool = True,
    namespace: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> CheckResult:
    """Check `questions` ("Q21", "Q21,Q26", "Q29"; every graded question where None) against the definitions
    in `namespace` (the notebook's, where None) and return the verdicts, which Jupyter shows as a table.
    `train=False` leaves out the tests that train on all of MNIST (Q29-Q30's loop is still checked, in
    seconds); `seed` is the training runs' seed, as grading's --train-seed."""
    start = time.perf_counter()
    try:
        wanted = parse(questions)
    except ValueError as err:
        return CheckResult(error=str(err))
    names = namespace if namespace is not None else _callers_namespace()
    missing = sorted(STUDENT_NAMES.difference(name for name in STUDENT_NAMES if callable(names.get(name))))
    waiting = {q: needs for q in wanted if (needs := [n for n in QUESTIONS[q].uses if n in missing])}
    runnable = [q for q in wanted if q not in waiting]
    result = CheckResult(waiting=waiting)
    if runnable:
        watcher = _watcher()
        _run(runnable, names, seed, train, watcher, result)
        watcher.done()
    result.seconds = time.perf_counter() - start
    return result


def parse(questions: str | Iterable[str] | None) -> list[str]:
    """The questions named (contract.parse_questions); None -> the graded ones."""
    if questions is None:
        return [q for q, question in QUESTIONS.items() if question.graded]
    try:
        return parse_questions(questions)
    except QuestionsError as err:
        raise ValueError(f"check: {err}") from None


def _callers_namespace() -> Mapping[str, Any]:
    """The notebook's namespace: IPython's user namespace, else the globals of check()'s caller."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        return shell.user_ns
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def _run(
    questions: list[str], namespace: Mapping[str, Any], seed: int, train: bool, watcher: Watcher, result: CheckResult
) -> None:
    """pytest on the question modules, in this process, with the kernel's objects as the implementation; the
    verdicts, or why there are none, into `result`."""
    live = LiveRun(namespace, watcher)
    args = [
        str(QUESTIONS_FOLDER),
        *("-p", "spec.harness.plugin", "-p", "spec.harness.fixtures"),
        *("--noconftest", "-c", os.devnull, "--rootdir", str(QUESTIONS_FOLDER.parent.parent)),
        *("-p", "no:cacheprovider", "--capture=sys", "-q"),
        *("--questions", ",".join(questions), "--train-seed", str(seed), "--mnist-folder", str(_data())),
        *(() if train else ("-m", "not training")),
    ]
    output = io.StringIO()  # pytest's own report: the verdicts are shown instead
    with redirect_stdout(output), redirect_stderr(output):
        code = pytest.main(args, plugins=[live])
    result.verdicts = live.collector.verdicts()
    checked = {v.question for v in result.verdicts}
    if live.used is None:  # never grade something else in the kernel's name
        result.error = "check: the spec did not take the kernel's definitions as the implementation"
    elif live.interrupted:
        result.interrupted = [q for q in questions if q not in checked]
    elif not train:
        result.not_trained = [q for q in questions if q not in checked]
    elif code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        last = [line for line in output.getvalue().splitlines() if line.strip()][-1:] or [f"exit code {code}"]
        result.error = f"check: the spec could not run: {last[0].strip()}"


def _watcher() -> JupyterWatcher | TextWatcher:
    """A display updated in place in Jupyter; lines on the terminal elsewhere."""
    try:
        from IPython import get_ipython

        if getattr(get_ipython(), "kernel", None) is not None:
            return JupyterWatcher()
    except ImportError:
        pass
    return TextWatcher(sys.stdout)


def _data() -> Path:
    global _data_folder
    if _data_folder is None:
        _data_folder = Path(tempfile.mkdtemp(prefix="mnist-lab-check-"))
        atexit.register(shutil.rmtree, _data_folder, ignore_errors=True)
    return _data_folder


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext spec.check`: `%check Q21`, or `%check` for every graded question the kernel allows."""

    def magic(line: str) -> CheckResult:
        return check(line.strip() or None, namespace=ipython.user_ns)

    ipython.register_magic_function(magic, "line", "check")
