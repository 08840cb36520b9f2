"""The batch grader over time (spec/grade/batch.py): nothing lost, nothing graded twice. A batch run again
keeps the grades whose submission and fingerprint are unchanged; one interrupted leaves a valid CSV of
what it graded, and the same command grades the rest. test_grading.py grades messy notebooks with it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spec.grade import batch
from spec.grade.fingerprint import fingerprint
from spec.grade.grades_csv import csv_text
from spec.grade.rubric import Rubric
from spec.harness import prepared
from spec.reports.verdicts import NotebookResult, QuestionVerdict
from spec.sandbox import containment

ROOT = Path(__file__).resolve().parents[2]
NORMALIZE = (
    "import numpy as np\n\ndef normalize_MNIST_images(x):\n"
    "    {}return 2 * (x.astype(np.float32) - 127.5) / 255\n"
)


def grade_command(folder: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, "-m", "spec.grade", str(folder), "--out", str(out), "--jobs", "1", "--questions", "Q21"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))  # one thread beside the test workers; the spec
    return command, env


def rows(out: Path) -> dict[str, dict[str, str]]:
    with out.open() as f:
        return {Path(row["notebook"]).name: row for row in csv.DictReader(f)}


@pytest.mark.grading
@pytest.mark.timeout(300)
def test_a_batch_run_again_grades_only_what_changed(tmp_path: Path) -> None:
    folder, out = tmp_path / "submissions", tmp_path / "grades.csv"
    folder.mkdir()
    for name in ("a.py", "b.py"):
        (folder / name).write_text(NORMALIZE.format(""))
    command, env = grade_command(folder, out)
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert first.returncode == 0, f"grade exited {first.returncode}: {first.stderr[-2000:]}"
    (folder / "b.py").write_text(NORMALIZE.format("x = x * 0\n    "))  # b changes: now wrong
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert "2 notebooks: 1 kept" in second.stdout, f"the rerun did not keep a.py:\n{second.stdout}"
    graded = [line for line in second.stdout.splitlines() if line.startswith(str(folder))]
    assert [Path(line.split(":")[0]).name for line in graded] == ["b.py"], f"the rerun graded {graded}"
    found = rows(out)
    assert (found["a.py"]["Q21"], found["b.py"]["Q21"]) == ("passed", "failed"), found


@pytest.mark.grading
@pytest.mark.timeout(300)
def test_an_interrupted_batch_keeps_a_valid_csv_of_what_it_graded(tmp_path: Path) -> None:
    folder, out = tmp_path / "submissions", tmp_path / "grades.csv"
    folder.mkdir()
    (folder / "a_quick.py").write_text(NORMALIZE.format(""))
    (folder / "b_slow.py").write_text(NORMALIZE.format("import time; time.sleep(600)\n    "))
    command, env = grade_command(folder, out)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # a_quick.py is graded first, then b_slow.py starts
        if line.startswith(str(folder / "a_quick.py")):
            break
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)  # as a shutdown would; Ctrl-C does the same
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the interrupted batch did not end within 60 s")
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 130, f"exit {code}, not 130: {stderr[-1000:]}"
    assert "what was graded is in" in stderr, stderr
    assert list(rows(out)) == ["a_quick.py"], f"the CSV after the interruption: {out.read_text()}"
    assert [Path(n["notebook"]).name for n in json.loads(out.with_suffix(".json").read_text())["notebooks"]] == [
        "a_quick.py"
    ]
    (folder / "b_slow.py").write_text(NORMALIZE.format(""))
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert "2 notebooks: 1 kept" in again.stdout, again.stdout
    assert list(rows(out)) == ["a_quick.py", "b_slow.py"], out.read_text()


def test_the_fingerprint_follows_the_questions_and_pytest_arguments() -> None:
    base = fingerprint(["Q21"], [])
    assert base == fingerprint(["Q21"], []), "the fingerprint is not stable"
    assert base != fingerprint(["Q21", "Q26"], []), "other questions, same fingerprint"
    assert base != fingerprint(["Q21"], ["-m", "not training"]), "other pytest arguments, same fingerprint"


def test_jobs_default_to_a_core_each_as_memory_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 8 * 2**30 // 4096}  # 8 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert batch.default_jobs() == 3, f"{batch.default_jobs()} jobs on 16 cores and 8 GiB, not 3 (2.5 GB each)"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert batch.default_jobs() == 2, f"{batch.default_jobs()} jobs on 2 cores and 8 GiB, not 2"


def test_the_csv_gives_points_of_the_rubric_and_what_reproduces_a_grade() -> None:
    rubric = Rubric.from_dict({"graded": ["Q21", "Q26"], "questions": {"Q26": {"points": 3}}})
    verdicts = [QuestionVerdict("Q21", "t", True, "failed", "m", {"failed": 1}),
                QuestionVerdict("Q26", "t", True, "passed", "", {"passed": 1})]  # fmt: skip
    graded = NotebookResult(torch="2.13.0", train_seed=4, questions=verdicts, notebook="a.ipynb", seconds=9.5,
                            sha256="ab" * 32)  # fmt: skip
    broken = NotebookResult(notebook="b.ipynb", error="not graded: pytest exited 3", sha256="cd" * 32)
    table = list(csv.DictReader(csv_text([graded, broken], rubric).splitlines()))
    assert table[0] == {"notebook": "a.ipynb", "points": "3", "total": "4", "passed": "1", "graded": "2",
                        "Q21": "failed", "Q26": "passed", "seconds": "9.5", "sha256": "ab" * 32, "torch": "2.13.0",
                        "train_seed": "4", "error": ""}, table[0]  # fmt: skip
    assert (table[1]["points"], table[1]["error"]) == ("0", "not graded: pytest exited 3"), table[1]


def test_a_batch_prepares_mnist_once_where_workers_can_only_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(containment, "choose", containment.Bubblewrap)
    args = batch.shared_mnist(tmp_path / "shared")
    assert args == ["--mnist-folder", str(tmp_path / "shared")], f"the notebooks are not told of it: {args}"
    missing = [f"{s}-{p}" for s in prepared.SPLITS for p in prepared.PARTS
               if not prepared.path(tmp_path / "shared", s, p).is_file()]  # fmt: skip
    assert not missing, f"not prepared: {missing}"
    monkeypatch.setattr(containment, "choose", containment.PlainProcess)
    assert batch.shared_mnist(tmp_path / "plain") == [], "plain workers, of this user, were handed a shared folder"
    assert not (tmp_path / "plain").exists(), "MNIST was prepared for plain workers to share"


# Right ones and wrong ones: a class of 8 with different outcomes, for shards.
WRONGS = ["x = x * 0\n    ", "x = x.T.T / 2\n    ", "return x / 255.0\n    ", "x = x + 1\n    "]
BODIES = ["", WRONGS[0], "", WRONGS[1], "", WRONGS[2], WRONGS[3], ""]
CLASS = {f"s{i}.py": NORMALIZE.format(body) for i, body in enumerate(BODIES)}


@pytest.mark.grading
@pytest.mark.timeout(600)
def test_a_class_graded_in_three_shards_and_merged_is_the_class_graded_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, source in CLASS.items():
        (folder / name).write_text(source)
    command, env = grade_command(folder, tmp_path / "whole.csv")
    whole = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert whole.returncode in (0, 1), f"the whole batch exited {whole.returncode}: {whole.stderr[-1000:]}"
    parts = []
    for k in (1, 2, 3):
        command, env = grade_command(folder, tmp_path / f"part{k}.csv")
        shard = subprocess.run([*command, "--shard", f"{k}/3"], env=env, capture_output=True, text=True, timeout=300,
                               check=False)  # fmt: skip
        assert shard.returncode in (0, 1), f"shard {k}/3 exited {shard.returncode}: {shard.stderr[-1000:]}"
        parts.append(str(tmp_path / f"part{k}.json"))
    graded = [rows(tmp_path / f"part{k}.csv") for k in (1, 2, 3)]
    assert sorted(name for part in graded for name in part) == sorted(CLASS), f"the shards graded {graded}"
    merged = subprocess.run([sys.executable, "-m", "spec.grade", "merge", *parts, "--out", str(tmp_path / "all.csv")],
                            env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert merged.returncode == 0, f"merge exited {merged.returncode}: {merged.stderr[-1000:]}"

    def without_seconds(name: str) -> tuple[list[dict[str, str]], list[dict]]:
        table = [{k: v for k, v in row.items() if k != "seconds"} for row in rows(tmp_path / f"{name}.csv").values()]
        data = json.loads((tmp_path / f"{name}.json").read_text())
        return table, [{k: v for k, v in entry.items() if k != "seconds"} for entry in data["notebooks"]]

    assert without_seconds("all") == without_seconds("whole"), "the merged shards differ from the batch at once"
    assert (tmp_path / "all.class.md").is_file(), "merge wrote no class report"


def test_a_submission_stays_in_its_shard_and_parts_graded_otherwise_are_refused(tmp_path: Path) -> None:
    keys = [f"student{i}/notebook.ipynb" for i in range(40)]
    slices = [batch.shard_of(key, 3) for key in keys]
    assert slices == [batch.shard_of(key, 3) for key in keys], "a submission moved between shards"
    assert set(slices) == {0, 1, 2}, f"40 submissions in 3 shards left one empty: {slices}"
    for name, key in (("a", "1234"), ("b", "abcd")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"fingerprint": key, "pytorch": None, "notebooks": []}))
    with pytest.raises(batch.GradingError, match=r"b.json was graded with fingerprint abcd, .*a.json with 1234"):
        batch.merge([str(tmp_path / "a.json"), str(tmp_path / "b.json")], tmp_path / "grades.csv")
