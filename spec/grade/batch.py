"""Grading a folder of notebooks: the spec's questions on each, a CSV row each, and a JSON of every report.

Each notebook (or script) is graded in a process of its own (submission.py); the questions on PyTorch
itself (Q1-Q20), which say nothing of a notebook, run once a batch, against mnist_lab. The CSV
(grades_csv.py) has a row per notebook; the JSON beside it holds every notebook's `NotebookResult`. Both
are rewritten as each notebook ends, so an interrupted batch keeps what it graded, and the same command
run again grades only what is missing or changed (fingerprint.py, the submission's SHA-256).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mnist_lab.files import atomic_write, write_json
from spec.grade import submission
from spec.grade.fingerprint import fingerprint, sha256
from spec.grade.grades_csv import csv_text
from spec.grade.rubric import Rubric
from spec.grade.submission import found_in, grade_one
from spec.harness.contract import QUESTIONS
from spec.harness.cores import threads_per_worker
from spec.reports import class_report
from spec.reports.verdicts import NotebookResult


class GradingError(Exception):
    """Grading cannot start: the message is one line."""


def submissions(paths: Iterable[str], shard: tuple[int, int] = (1, 1)) -> list[Path]:
    """The notebooks and scripts named, and those in the folders named (checkpoints left out), sorted; of them,
    with `shard` (K, N), the K-th of N stable slices (`shard_of`)."""
    found: list[Path] = []
    keys: dict[Path, str] = {}
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inside = found_in(path)
            keys.update((nb, nb.relative_to(path).as_posix()) for nb in inside)
            found += inside
        elif path.is_file():
            keys[path] = path.name
            found.append(path)
        else:
            raise GradingError(f"{name}: no such file or folder")
    if not found:
        raise GradingError(f"no notebook (.ipynb) or script (.py) in {', '.join(paths)}")
    k, n = shard
    return [nb for nb in found if shard_of(keys[nb], n) == k - 1]


def shard_of(key: str, shards: int) -> int:
    """A submission's slice of `shards`, from the SHA-256 of its place in the folder graded (`key`), not of its
    content: a resubmission stays in its shard, on every machine that grades one."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % shards


def check_tools() -> None:
    tools = {"pytest": "pytest", "nbformat": "nbformat", "pytest_timeout": "pytest-timeout"}
    missing = [name for module, name in tools.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise GradingError(f"grading needs {', '.join(missing)}: pip install -e '.[test]'")


def grade(
    paths: Sequence[str],
    out: Path,
    jobs: int = 0,
    timeout: float = 3600,
    questions: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
    rubric: Rubric | None = None,
    shard: tuple[int, int] = (1, 1),
) -> Batch:
    """Grade every submission on `questions` (all, where none are named) into `out` (CSV) and `out` with
    .json, both rewritten as each notebook ends: the questions on PyTorch itself once, the graded ones
    per notebook; a grade already in `out`'s JSON for the same submission and fingerprint is kept."""
    check_tools()
    notebooks = submissions(paths, shard)
    wanted = list(questions) or list(QUESTIONS)
    pytorch = [q for q in wanted if not QUESTIONS[q].graded]
    graded = [q for q in wanted if QUESTIONS[q].graded]
    if not graded:
        raise GradingError(f"--questions {','.join(wanted)}: none is graded (Q21-Q33 are; the questions on PyTorch "
                           "itself run once a batch, beside them)")  # fmt: skip
    key = fingerprint([*graded, "|", *pytorch], pytest_args)
    batch = Batch(key, dataclasses.replace(rubric or Rubric(), graded=tuple(graded)))  # its points, these questions
    if not notebooks:  # a shard of more than there are submissions: an empty part, which `merge` takes
        print(f"--shard {shard[0]}/{shard[1]}: no submission falls in this shard", flush=True)
        batch.write(out, [])
        return batch
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
        submission.stop_all()
        progress.close()
        data.cleanup()
    batch.write(out, notebooks)
    results = [batch.results[str(nb)] for nb in notebooks]
    markdown, page = class_report.write(results, out.parent, stem=f"{out.stem}.class")
    print(f"what the class got wrong: {markdown}, {page}", flush=True)
    return batch


def merge(parts: Sequence[str], out: Path, rubric: Rubric | None = None) -> Batch:
    """The batch JSONs of several shards (`--shard K/N`) as one batch: one CSV, one JSON and one class report in
    `out`'s folder. Parts graded with another spec, torch, questions or pytest arguments are refused."""
    loaded = []
    for name in parts:
        data = _previous(Path(name))
        if not isinstance(data.get("notebooks"), list) or "fingerprint" not in data:
            raise GradingError(f"{name}: not a batch's JSON (python -m spec.grade ... --out PART.csv writes one)")
        loaded.append((name, data))
    first, key = loaded[0][0], loaded[0][1]["fingerprint"]
    for name, data in loaded[1:]:
        if data["fingerprint"] != key:
            raise GradingError(f"{name} was graded with fingerprint {data['fingerprint']}, {first} with {key}: "
                               "another spec, torch, questions or pytest arguments; grade them alike")  # fmt: skip
    results = {entry["notebook"]: NotebookResult.from_json(entry) for _, data in loaded for entry in data["notebooks"]}
    run = {v.question for r in results.values() for v in r.questions if v.graded}
    graded = tuple(q for q in QUESTIONS if q in run)
    batch = Batch(key, dataclasses.replace(rubric or Rubric(), graded=graded or Rubric().graded))
    pytorch = next((data["pytorch"] for _, data in loaded if data.get("pytorch")), None)
    batch.pytorch = NotebookResult.from_json(pytorch) if pytorch else None
    batch.results = results
    notebooks = sorted(Path(name) for name in results)
    batch.write(out, notebooks)
    class_report.write([results[str(nb)] for nb in notebooks], out.parent, stem=f"{out.stem}.class")
    return batch


def shared_mnist(folder: Path) -> list[str]:
    """MNIST prepared once for the whole batch, in `folder`, for every notebook's grading and worker to map
    (spec/harness/prepared.py): pytest's arguments that say so. Only where workers run under bubblewrap,
    which binds the folder read-only: a plain worker, of this user, could change it for the notebooks
    graded after it, so there each notebook's grading prepares its own."""
    from spec.harness import prepared
    from spec.sandbox import containment

    if not containment.choose().isolated:
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
        text = csv_text(results, self.rubric).encode()
        atomic_write(out, lambda f: f.write(text))
        write_json(out.with_suffix(".json"), {
            "fingerprint": self.fingerprint, "pytorch": self.pytorch.to_json() if self.pytorch else None,
            "notebooks": [r.to_json() for r in results]})  # fmt: skip


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


