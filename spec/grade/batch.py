"""Grading a folder of notebooks: the spec's questions on each, a CSV row each, and a JSON of every report.

Each notebook (or script) is graded by `pytest spec/questions --impl NOTEBOOK --grade-report ...` in a
process of its own, so that one notebook cannot affect another, in a temporary folder; the questions on
PyTorch itself (Q1-Q20), which say nothing of a notebook, run once a batch, against mnist_lab. The CSV
has a row per notebook: its points, its graded questions passed, each one's outcome, and what
reproduces the grade; the JSON beside it holds every notebook's `NotebookResult`. Both are rewritten as
each notebook ends, so an interrupted batch keeps what it graded, and the same command run again grades
only what is missing or changed (`fingerprint`, the submission's SHA-256).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spec.gradescope.rubric import Rubric
from spec.harness.contract import QUESTIONS
from spec.harness.cores import threads_per_worker
from spec.reports import class_report
from spec.reports.verdicts import NotebookResult

SPEC = Path(__file__).resolve().parent.parent
QUESTIONS_DIR = SPEC / "questions"
SUFFIXES = (".ipynb", ".py")
NOT_GRADING = ("meta_tests", "package_tests", "benchmarks", "__pycache__")  # spec/ folders grading does not use


class GradingError(Exception):
    """Grading cannot start: the message is one line."""


def submissions(paths: Iterable[str]) -> list[Path]:
    """The notebooks and scripts named, and those in the folders named (checkpoints left out), sorted."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += found_in(path)
        elif path.is_file():
            found.append(path)
        else:
            raise GradingError(f"{name}: no such file or folder")
    if not found:
        raise GradingError(f"no notebook (.ipynb) or script (.py) in {', '.join(paths)}")
    return found


def found_in(folder: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """The files with these suffixes in `folder` and below, Jupyter's checkpoints left out, sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix in suffixes and p.is_file() and ".ipynb_checkpoints" not in p.parts
    )


def check_tools() -> None:
    tools = {"pytest": "pytest", "nbformat": "nbformat", "pytest_timeout": "pytest-timeout"}
    missing = [name for module, name in tools.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise GradingError(f"grading needs {', '.join(missing)}: pip install -e '.[test]'")


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
            _stop(proc)
            raise
        finally:
            _RUNNING.discard(proc)
    return proc.returncode, stdout, stderr


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C for pytest, which then closes its sandboxed workers; a kill where that is not enough."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def grade(
    paths: Sequence[str],
    out: Path,
    jobs: int = 0,
    timeout: float = 3600,
    questions: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
    rubric: Rubric | None = None,
) -> Batch:
    """Grade every submission on `questions` (all, where none are named) into `out` (CSV) and `out` with
    .json, both rewritten as each notebook ends: the questions on PyTorch itself once, the graded ones
    per notebook; a grade already in `out`'s JSON for the same submission and fingerprint is kept."""
    check_tools()
    notebooks = submissions(paths)
    wanted = list(questions) or list(QUESTIONS)
    pytorch = [q for q in wanted if not QUESTIONS[q].graded]
    graded = [q for q in wanted if QUESTIONS[q].graded]
    if not graded:
        raise GradingError(f"--questions {','.join(wanted)}: none is graded (Q21-Q33 are; the questions on PyTorch "
                           "itself run once a batch, beside them)")  # fmt: skip
    key = fingerprint([*graded, "|", *pytorch], pytest_args)
    batch = Batch(key, dataclasses.replace(rubric or Rubric(), graded=tuple(graded)))  # its points, these questions
    kept = batch.keep(_previous(out.with_suffix(".json")), notebooks)
    jobs = jobs or default_jobs()
    threads = 0 if jobs == 1 or "OMP_NUM_THREADS" in os.environ else threads_per_worker(jobs)
    todo = [nb for nb in notebooks if str(nb) not in batch.results]
    print(f"{len(notebooks)} notebooks: {len(kept)} kept from {out.with_suffix('.json')} (same submission and "
          f"fingerprint), {len(todo)} to grade, {jobs} at once", flush=True)  # fmt: skip
    args = ["--questions", ",".join(graded), *pytest_args]
    progress = _Progress(len(todo))
    pool = ThreadPoolExecutor(max_workers=jobs)
    data = tempfile.TemporaryDirectory(prefix="mnist-lab-mnist-")
    try:
        if todo:
            shared = shared_mnist(Path(data.name))
            args += shared
            sandbox_check(Path(data.name) if shared else None)
        if pytorch and batch.pytorch is None:
            batch.pytorch = grade_one(None, timeout, ["--questions", ",".join(pytorch), *pytest_args], threads)
            outcomes = Counter(q.outcome for q in batch.pytorch.questions)
            done = batch.pytorch.error or ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
            progress.say(f"PyTorch itself ({', '.join(pytorch)}), once for the batch: {done}")
        futures = {pool.submit(_graded, nb, timeout, args, threads, key): nb for nb in todo}
        for future in as_completed(futures):
            result = future.result()
            batch.results[result.notebook] = result
            batch.write(out, notebooks)
            progress.done(result)
    finally:  # on Ctrl-C what ended is written; the rest is stopped, and graded by the next run
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(_RUNNING):
            _stop(proc)
        progress.close()
        data.cleanup()
    batch.write(out, notebooks)
    results = [batch.results[str(nb)] for nb in notebooks]
    markdown, page = class_report.write(results, out.parent, stem=f"{out.stem}.class")
    print(f"what the class got wrong: {markdown}, {page}", flush=True)
    return batch


def shared_mnist(folder: Path) -> list[str]:
    """MNIST prepared once for the whole batch, in `folder`, for every notebook's grading and worker to map
    (spec/harness/prepared.py): pytest's arguments that say so. Only where workers run under bubblewrap,
    which binds the folder read-only: a plain worker, of this user, could change it for the notebooks
    graded after it, so there each notebook's grading prepares its own."""
    from spec.harness import prepared
    from spec.sandbox.client import containment

    if containment().kind != "bubblewrap":
        return []
    for split in prepared.SPLITS:
        prepared.prepare(folder, split)
    return ["--mnist-folder", str(folder)]


def sandbox_check(data: Path | None = None) -> None:
    """Stop the batch, before it grades anyone, where the sandbox cannot run a known-good definition: one
    line for the course, rather than every student failed for the grader's fault."""
    from spec.sandbox.client import self_check

    problem = self_check(data)
    if problem is not None:
        raise GradingError(f"not graded, the batch stopped before its first notebook: {problem}")


def default_jobs() -> int:
    """A notebook per core, as far as memory allows: grading one takes about 2.5 GB at its peak."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return cores
    return max(1, min(cores, int(memory // (2.5 * 2**30))))


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


def _graded(notebook: Path, timeout: float, args: Sequence[str], threads: int, key: str) -> NotebookResult:
    digest = sha256(notebook)  # before grading: the file may change while it is graded
    result = grade_one(notebook, timeout, args, threads)
    result.sha256, result.fingerprint = digest, key
    return result


def _previous(path: Path) -> dict[str, Any]:
    """The batch JSON a previous run wrote, or nothing where there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Batch:
    """A batch's grades as they arrive: the PyTorch questions once, each notebook's result by its name."""

    fingerprint: str
    rubric: Rubric
    pytorch: NotebookResult | None = None
    results: dict[str, NotebookResult] = field(default_factory=dict)

    def keep(self, previous: dict[str, Any], notebooks: list[Path]) -> list[str]:
        """The previous run's grades whose submission and fingerprint are unchanged (errors are graded again)."""
        pytorch = previous.get("pytorch")
        if previous.get("fingerprint") == self.fingerprint and isinstance(pytorch, dict) and not pytorch.get("error"):
            self.pytorch = NotebookResult.from_json(pytorch)
        known = {entry.get("notebook"): entry for entry in previous.get("notebooks", []) if isinstance(entry, dict)}
        for notebook in notebooks:
            entry = known.get(str(notebook)) or {}
            same = entry.get("fingerprint") == self.fingerprint and entry.get("sha256") == sha256(notebook)
            if same and not entry.get("error"):
                self.results[str(notebook)] = NotebookResult.from_json(entry)
        return list(self.results)

    @property
    def failed(self) -> int:
        return sum(bool(r.error) for r in self.results.values())

    def write(self, out: Path, notebooks: list[Path]) -> None:
        """The CSV and the JSON of what is graded so far, in the submissions' order, each whole or not at all."""
        results = [self.results[str(nb)] for nb in notebooks if str(nb) in self.results]
        write_whole(out, csv_text(results, self.rubric))
        data = {"fingerprint": self.fingerprint, "pytorch": self.pytorch.to_json() if self.pytorch else None,
                "notebooks": [r.to_json() for r in results]}  # fmt: skip
        write_whole(out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")


class _Progress:
    """A progress bar on a terminal (notebooks done, failed, time left); a plain line per notebook elsewhere."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="notebook", dynamic_ncols=True) if sys.stderr.isatty() and total else None
        self.failed = 0

    def say(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def done(self, result: NotebookResult) -> None:
        self.failed += bool(result.error)
        timing = "" if result.error else f" ({result.seconds:.0f} s)"
        self.say(f"{result.notebook}: {result.summary()}{timing}")
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed)
            self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_whole(path: Path, text: str) -> None:
    """All of `text` or nothing: a grading cut short leaves the last complete file."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def csv_text(results: list[NotebookResult], rubric: Rubric) -> str:
    """A row per notebook: its points of the total (the rubric's), the graded questions passed and run, each
    graded question's outcome, the seconds it took, and what reproduces it: its SHA-256, torch, the seed."""
    questions = list(dict.fromkeys(q.question for r in results for q in r.questions if q.graded))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "points", "total", "passed", "graded", *questions, "seconds", "sha256", "torch",
                     "train_seed", "error"])  # fmt: skip
    for r in results:
        outcomes = {q.question: q.outcome for q in r.questions}
        if r.error:
            row = [r.notebook, 0, f"{rubric.total:g}", "", "", *([""] * len(questions)), r.seconds or "", r.sha256,
                   "", "", r.error]  # fmt: skip
        else:
            points = sum(rubric.points_of(q.question) for q in r.questions if q.graded and q.outcome == "passed")
            row = [r.notebook, f"{points:g}", f"{rubric.total:g}", r.graded_passed, r.graded,
                   *(outcomes.get(q, "") for q in questions), r.seconds, r.sha256, r.torch, r.train_seed,
                   ""]  # fmt: skip
        writer.writerow(row)
    return buffer.getvalue()
