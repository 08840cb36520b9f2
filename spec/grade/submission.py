"""One submission: where the submissions in a folder are, and the grading of one, by `pytest spec/questions
--impl NOTEBOOK --grade-report ...` in a process of its own, in a temporary folder, so that one notebook
cannot affect another. The batch (batch.py) and Gradescope's autograder (spec/gradescope/run.py) both grade
through `grade_one`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from spec.reports.verdicts import NotebookResult

QUESTIONS_DIR = Path(__file__).resolve().parent.parent / "questions"
SUFFIXES = (".ipynb", ".py")


def found_in(folder: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """The files with these suffixes in `folder` and below, Jupyter's checkpoints left out, sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix in suffixes and p.is_file() and ".ipynb_checkpoints" not in p.parts
    )


def grade_one(
    notebook: Path | None, timeout: float, pytest_args: Sequence[str] = (), threads: int = 0
) -> NotebookResult:
    """The spec's grade report for one notebook (None: mnist_lab, for the questions on PyTorch itself), or
    one with an `error` saying why there is none. `pytest_args` say what more to tell pytest (`--questions
    Q21`, `-m 'not training'`); `threads`, where given, is torch's thread count there (OMP_NUM_THREADS)."""
    start, impl = time.perf_counter(), str(notebook.resolve()) if notebook else "mnist_lab"
    name = str(notebook) if notebook else impl
    with tempfile.TemporaryDirectory(prefix="mnist-lab-grade-") as folder:
        stem = Path(folder, "grades")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [
            sys.executable, "-m", "pytest", str(QUESTIONS_DIR), "--impl", impl,
            f"--grade-report={stem}", "-q", "-p", "no:cacheprovider", *pytest_args,
        ]  # fmt: skip
        try:
            code, stdout, stderr = _run(command, folder, env, timeout)
        except subprocess.TimeoutExpired:
            return NotebookResult(notebook=name, error=f"not graded: the spec ran past {timeout:g} s")
        report = Path(f"{stem}.json")
        if code < 0:
            why = " (out of memory, or a limit)" if code == -signal.SIGKILL else ""
            return NotebookResult(notebook=name, error=f"not graded: the spec's pytest process was killed by "
                                  f"{signal.Signals(-code).name}{why}")  # fmt: skip
        if code not in (0, 1) or not report.is_file():
            last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
            return NotebookResult(notebook=name, error=f"not graded: pytest exited {code}: {last}")
        result = NotebookResult.from_json(json.loads(report.read_text(encoding="utf-8")))
    result.implementation = result.notebook = name  # as named here, not relative to the temporary folder
    result.seconds = round(time.perf_counter() - start, 1)
    return result


_RUNNING: set[subprocess.Popen[str]] = set()  # the grading processes now running, stopped on an interruption


def _run(command: list[str], folder: str, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    with subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:  # fmt: skip
        _RUNNING.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise
        finally:
            _RUNNING.discard(proc)
    return proc.returncode, stdout, stderr


def stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C for pytest, which then closes its sandboxed workers; a kill where that is not enough."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()




def stop_all() -> None:
    """Stop every grading process still running (an interrupted batch)."""
    for proc in list(_RUNNING):
        stop(proc)
