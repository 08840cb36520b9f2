"""Grading a folder of notebooks: the spec's questions on each, a CSV row each, and a JSON of every report.

Each notebook (or script) is graded by `pytest spec/questions --impl NOTEBOOK --grade-report ...` in a
process of its own, so that one notebook cannot affect another, in a temporary folder. The CSV has one
row per notebook: its graded questions passed, of how many, and each graded question's outcome; the
JSON beside it holds every notebook's `NotebookResult` (messages and skipped cells included).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spec.harness.cores import threads_per_worker
from spec.reports.verdicts import NotebookResult

QUESTIONS_DIR = Path(__file__).resolve().parent.parent / "questions"
SUFFIXES = (".ipynb", ".py")


class GradingError(Exception):
    """Grading cannot start: the message is one line."""


def submissions(paths: Iterable[str]) -> list[Path]:
    """The notebooks and scripts named, and those in the folders named (checkpoints left out), sorted."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SUFFIXES and p.is_file() and ".ipynb_checkpoints" not in p.parts
            )
        elif path.is_file():
            found.append(path)
        else:
            raise GradingError(f"{name}: no such file or folder")
    if not found:
        raise GradingError(f"no notebook (.ipynb) or script (.py) in {', '.join(paths)}")
    return found


def check_tools() -> None:
    tools = {"pytest": "pytest", "nbformat": "nbformat", "pytest_timeout": "pytest-timeout"}
    missing = [name for module, name in tools.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise GradingError(f"grading needs {', '.join(missing)}: pip install -e '.[test]'")


def grade_one(notebook: Path, timeout: float, pytest_args: Sequence[str] = (), threads: int = 0) -> NotebookResult:
    """The spec's grade report for one notebook, or one with an `error` saying why there is none.
    `pytest_args` say what more to tell pytest (`--questions Q21`, `-m 'not training'`); `threads`, where
    given, is torch's thread count there (OMP_NUM_THREADS)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnist-lab-grade-") as folder:
        stem = Path(folder, "grades")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [
            sys.executable, "-m", "pytest", str(QUESTIONS_DIR), "--impl", str(notebook.resolve()),
            f"--grade-report={stem}", "-q", "-p", "no:cacheprovider", *pytest_args,
        ]  # fmt: skip
        try:
            proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return NotebookResult(notebook=str(notebook), error=f"not graded: the spec ran past {timeout:g} s")
        report = Path(f"{stem}.json")
        if proc.returncode not in (0, 1) or not report.is_file():
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            return NotebookResult(notebook=str(notebook), error=f"not graded: pytest exited {proc.returncode}: {last}")
        result = NotebookResult.from_json(json.loads(report.read_text(encoding="utf-8")))
    result.implementation = result.notebook = str(notebook)  # as named here, not relative to the temporary folder
    result.seconds = round(time.perf_counter() - start, 1)
    return result


def grade(
    paths: Sequence[str],
    out: Path,
    jobs: int = 1,
    timeout: float = 3600,
    questions: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
) -> list[NotebookResult]:
    """Grade every submission on `questions` (all, where none are named), print a line each, write `out`
    (CSV) and `out` with .json."""
    check_tools()
    notebooks = submissions(paths)
    pytest_args = [*(["--questions", ",".join(questions)] if questions else []), *pytest_args]
    threads = 0 if jobs == 1 or "OMP_NUM_THREADS" in os.environ else threads_per_worker(jobs)
    results: list[NotebookResult] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(lambda nb: grade_one(nb, timeout, pytest_args, threads), notebooks):
            results.append(result)
            timing = "" if result.error else f" ({result.seconds:.0f} s)"
            print(f"{result.notebook}: {result.summary()}{timing}", flush=True)
    _write(out, csv_text(results))
    _write(out.with_suffix(".json"), json.dumps({"notebooks": [r.to_json() for r in results]}, indent=2) + "\n")
    return results


def _write(path: Path, text: str) -> None:
    """All of `text` or nothing: a grading cut short leaves the last complete file."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def csv_text(results: list[NotebookResult]) -> str:
    """A row per notebook: notebook, passed, graded, each graded question's outcome, error."""
    questions = list(dict.fromkeys(q.question for r in results for q in r.questions if q.graded))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "passed", "graded", *questions, "error"])
    writer.writerows(r.csv_row(questions) for r in results)
    return buffer.getvalue()
