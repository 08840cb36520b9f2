"""`python -m mnist_lab grade SUBMISSIONS... --out grades.csv`: the spec on each of a folder of notebooks.

Each notebook (or script) is graded by `pytest spec --impl NOTEBOOK --grade-report ...` in a process of its
own, so that one notebook cannot affect another, in a temporary folder. The CSV has one row per notebook:
its graded questions passed, of how many, and each graded question's outcome; the JSON beside it holds
every notebook's whole report (messages and skipped cells included).
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
from typing import Any

from .files import atomic_write, write_json

SPEC = Path(__file__).resolve().parent.parent / "spec"
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
    if not (SPEC / "contract.py").is_file():
        raise GradingError(f"{SPEC}: the spec folder is missing; grading runs from a checkout of mnist-lab")
    tools = {"pytest": "pytest", "nbformat": "nbformat", "pytest_timeout": "pytest-timeout"}
    missing = [name for module, name in tools.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise GradingError(f"grading needs {', '.join(missing)}: pip install -e '.[test]'")


def question_modules(questions: Sequence[str]) -> list[str]:
    """The spec's modules of these questions ("Q21", "Q29-Q30"), as the spec names them (spec/contract.py)."""
    loader = importlib.util.spec_from_file_location("_mnist_lab_spec_contract", SPEC / "contract.py")
    contract = sys.modules[loader.name] = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(contract)
    modules = {contract.question_of(p.name): str(p) for p in sorted(SPEC.glob("test_q*.py"))}
    unknown = [q for q in questions if q not in modules]
    if unknown:
        raise GradingError(f"no such question: {', '.join(unknown)} (the questions are {', '.join(modules)})")
    return [modules[q] for q in questions]


def grade_one(notebook: Path, timeout: float, pytest_args: Sequence[str] = (), threads: int = 0) -> dict[str, Any]:
    """The spec's grade report for one notebook, or an `error` saying why there is none. `pytest_args`
    name what to run (the whole spec where they name no test path) and how; `threads`, where given, is
    torch's thread count there (OMP_NUM_THREADS)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnist-lab-grade-") as folder:
        stem = Path(folder, "grades")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [
            sys.executable, "-m", "pytest", "--impl", str(notebook.resolve()), f"--grade-report={stem}",
            "-q", "-p", "no:cacheprovider", *pytest_args,
        ]  # fmt: skip
        try:
            proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"notebook": str(notebook), "error": f"not graded: the spec ran past {timeout:g} s"}
        report = Path(f"{stem}.json")
        if proc.returncode not in (0, 1) or not report.is_file():
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            return {"notebook": str(notebook), "error": f"not graded: pytest exited {proc.returncode}: {last}"}
        result = json.loads(report.read_text(encoding="utf-8"))
    result["implementation"] = str(notebook)  # as named here, not relative to the temporary folder
    return {"notebook": str(notebook), "seconds": round(time.perf_counter() - start, 1), **result}


def grade(
    paths: Sequence[str],
    out: str,
    jobs: int = 1,
    timeout: float = 3600,
    questions: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Grade every submission on `questions` (all, where none are named), print a line each, write `out`
    (CSV) and `out` with .json."""
    check_tools()
    pytest_args = [*(question_modules(questions) if questions else [str(SPEC)]), *pytest_args]
    notebooks = submissions(paths)
    # Several torch processes, each with a thread per core, slow each other down many times over.
    threads = 0 if jobs == 1 or "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // jobs)
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(lambda nb: grade_one(nb, timeout, pytest_args, threads), notebooks):
            results.append(result)
            if "error" in result:
                print(f"{result['notebook']}: {result['error']}", flush=True)
            else:
                print(
                    f"{result['notebook']}: {result['graded_passed']} of {result['graded']} graded questions passed "
                    f"({result['seconds']:.0f} s)",
                    flush=True,
                )
    atomic_write(out, lambda f: f.write(csv_text(results).encode()))
    write_json(Path(out).with_suffix(".json"), {"notebooks": results})
    return results


def csv_text(results: list[dict[str, Any]]) -> str:
    questions = list(dict.fromkeys(q["question"] for r in results for q in r.get("questions", []) if q["graded"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "passed", "graded", *questions, "error"])
    for r in results:
        outcomes = {q["question"]: q["outcome"] for q in r.get("questions", [])}
        writer.writerow(
            [r["notebook"], r.get("graded_passed", ""), r.get("graded", ""), *(outcomes.get(q, "") for q in questions),
             r.get("error", "")]
        )  # fmt: skip
    return buffer.getvalue()
