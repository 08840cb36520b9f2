"""Where grading can run: the bounds each host allows (cgroup v1, v2, a systemd scope, RLIMIT_NPROC), a worker
started wherever the grader's Python lives, and the grader's own failures said as "not graded", never as a
student's failure (spec/sandbox/bounds.py, spec/sandbox/client.py).

cgroup v2 and systemd are not on the CI machine (cgroup v1, as root): their code is tested on a temporary
folder laid out as a cgroup2 hierarchy, and by the commands it would run.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spec.package_tests.support import REPO
from spec.sandbox import bounds, client, containment
from spec.sandbox.errors import SandboxError

SOLUTION = REPO / "spec" / "meta_tests" / "fixtures" / "printed_solution.ipynb"
BUBBLEWRAP = containment.choose().isolated


# --- the bounds, on a cgroup2 hierarchy laid out in a folder -------------------------------------------------


@pytest.fixture
def cgroup2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cgroup2 hierarchy in a folder: the root, /grading (whose children may have pids and memory) and the
    grader's own /grading/grader, which has processes and so cannot turn controllers on for its children
    (its cgroup.subtree_control is a folder here: writing it fails, as the kernel's EBUSY would)."""
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    own = tmp_path / "grading" / "grader"
    own.mkdir(parents=True)
    (tmp_path / "grading" / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "grading" / "cgroup.subtree_control").write_text("memory pids\n")
    (own / "cgroup.controllers").write_text("memory pids\n")
    (own / "cgroup.subtree_control").mkdir()
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")
    monkeypatch.setattr(bounds, "CGROUPS", tmp_path)
    monkeypatch.setattr(bounds, "_membership", lambda: "0::/grading/grader\n")
    bounds.plan.cache_clear()
    yield tmp_path
    bounds.plan.cache_clear()


def test_cgroup_v2_is_told_from_v1_by_its_root(cgroup2: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert bounds.version() == 2, "a hierarchy with cgroup.controllers at its root was not taken for cgroup v2"
    v1 = tmp_path_factory.mktemp("v1")
    (v1 / "memory").mkdir()
    assert bounds.version(v1) == 1, "a hierarchy of one folder per controller was not taken for cgroup v1"
    assert bounds.own_v2() == cgroup2 / "grading" / "grader", "the grader's own cgroup was misread from 0::"


def test_cgroup_v2_workers_go_beneath_the_nearest_cgroup_that_delegates_their_controllers(cgroup2: Path) -> None:
    plan = bounds.plan()
    assert isinstance(plan, bounds.Cgroups), f"bounded by {plan.how}, not by a cgroup"
    assert plan.version == 2, f"bounded by {plan.how}, not by cgroup v2"
    assert plan.controllers == ("pids", "memory"), f"controllers {plan.controllers}, not pids and memory"
    assert plan.parent("pids") == cgroup2 / "grading", f"workers go beneath {plan.parent('pids')}, not /grading"
    made = plan.cgroup("worker")
    assert len(made) == 1, f"{made}: cgroup v2 puts both controllers in one cgroup"
    cgroup = made[0]
    assert cgroup.parent == cgroup2 / "grading", f"{cgroup} is not beneath /grading"
    assert cgroup.name.startswith(f"mnist-lab-{os.getpid()}-"), f"{cgroup.name} does not name the grader's PID"
    assert (cgroup / "pids.max").read_text() == str(bounds.PROCESSES), "pids.max is not the process bound"
    assert (cgroup / "memory.max").read_text() == str(bounds.MEMORY_LIMIT), "memory.max is not the memory bound"
    assert not (cgroup / "memory.limit_in_bytes").exists(), "cgroup v1's memory file was written on cgroup v2"
    assert not (cgroup / "cgroup.subtree_control").exists(), "a worker's cgroup turned controllers on: cgroup v2 " \
        "then refuses the worker's process in it"
    assert "at most 256 processes (cgroup v2)" in plan.line(), f"the report does not say which bound: {plan.line()}"


def test_a_cgroup_v2_that_a_process_cannot_join_is_not_used(cgroup2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "join_cgroups", lambda cgroups: 1 / 0)  # the kernel refuses the move
    monkeypatch.setattr(bounds, "_user_manager", lambda: False)
    plan = bounds.plan()
    assert not isinstance(plan, bounds.Cgroups), f"bounded by {plan.how}, in a cgroup no process could join"


def test_cgroup_v2_controllers_are_turned_on_where_they_may_be(cgroup2: Path) -> None:
    control = cgroup2 / "grading" / "grader" / "cgroup.subtree_control"
    control.rmdir()
    control.write_text("")  # the grader's cgroup may now turn them on: the workers go beneath it
    plan = bounds.plan()
    assert plan.parent("memory") == cgroup2 / "grading" / "grader", f"beneath {plan.parent('memory')}"
    assert control.read_text().startswith("+"), "the controllers were not turned on for the grader's children"


def test_without_a_delegated_cgroup_a_systemd_scope_or_rlimit_bounds_the_worker(
    cgroup2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cgroup2 / "grading" / "cgroup.subtree_control").write_text("")
    for folder in (cgroup2, cgroup2 / "grading"):  # nothing may be turned on anywhere
        (folder / "cgroup.subtree_control").unlink(missing_ok=True)
        (folder / "cgroup.subtree_control").mkdir()
    monkeypatch.setattr(bounds, "_user_manager", lambda: True)
    bounds.plan.cache_clear()
    scope = bounds.plan()
    assert isinstance(scope, bounds.SystemdScope), f"bounded by {scope.how}, not by a systemd user scope"
    command = scope.wrap(["python", "-I", "worker.py"], {"PATH": "/usr/bin", "HOME": "/tmp/w"})
    assert command[:3] == [command[0], "--user", "--scope"], f"not a user scope: {command}"
    assert f"--property=TasksMax={bounds.PROCESSES}" in command, f"no TasksMax: {command}"
    assert f"--property=MemoryMax={bounds.MEMORY_LIMIT}" in command, f"no MemoryMax: {command}"
    assert command[-7:] == ["env", "-i", "PATH=/usr/bin", "HOME=/tmp/w", "python", "-I", "worker.py"], (
        f"the worker does not get its own environment back: {command}"
    )
    assert scope.cgroup("worker") == [], "a scope made cgroups of its own"
    monkeypatch.setattr(bounds, "_user_manager", lambda: False)
    monkeypatch.setattr(bounds, "_is_root", lambda: False)
    bounds.plan.cache_clear()
    fallback = bounds.plan()
    assert isinstance(fallback, bounds.ProcessRlimit), f"bounded by {fallback.how}, not by RLIMIT_NPROC"
    assert "RLIMIT_NPROC" in fallback.line(), fallback.line()
    monkeypatch.setattr(bounds, "_is_root", lambda: True)  # root's processes are counted host-wide: no limit
    bounds.plan.cache_clear()
    unbounded = bounds.plan()
    assert type(unbounded) is bounds.Bounds, f"root gets {unbounded.how}, which it cannot set right"
    assert "no bound on its processes" in unbounded.line(), unbounded.line()
    assert bounds.process_limit(running=40) == 40 + bounds.PROCESSES, "RLIMIT_NPROC is not the running + the bound"


def test_where_rlimit_is_the_bound_the_worker_runs_under_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spec.harness import notebook
    from spec.sandbox.remote import RemoteFunction

    monkeypatch.setattr(bounds, "plan", lambda: bounds.ProcessRlimit())
    monkeypatch.setattr(bounds, "process_limit", lambda running=None: 4321)
    path = tmp_path / "student.py"
    path.write_text("import resource\ndef limit(x):\n    return list(resource.getrlimit(resource.RLIMIT_NPROC))\n")
    built = notebook.build(notebook.plan(path), client.Worker(hidden=[tmp_path], sandbox=containment.PlainProcess()))
    try:
        assert RemoteFunction(built.worker, "limit", timeout=60)(0) == [4321, 4321], "RLIMIT_NPROC was not set"
    finally:
        built.worker.close()


# --- the interpreter, wherever it lives --------------------------------------------------------------------


def test_an_interpreter_the_sandbox_would_hide_is_shown_with_its_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base" / "bin" / "python3.11"
    base.parent.mkdir(parents=True)
    base.write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base)
    link = tmp_path / "link" / "python"
    link.parent.mkdir()
    link.symlink_to(venv / "bin" / "python")
    monkeypatch.setattr(containment, "interpreter_paths", lambda: [str(venv), "/usr/lib", str(link)])
    args = containment.interpreter_binds([tmp_path])
    pairs = [tuple(args[i : i + 3]) for i in range(0, len(args), 3)]
    assert ("--ro-bind", str(venv), str(venv)) in pairs, f"the venv is not shown: {pairs}"
    assert ("--symlink", str(venv / "bin" / "python"), str(link)) in pairs, f"the link is not made: {pairs}"
    assert ("--ro-bind", str(base), str(base)) in pairs, f"what the links lead to is not shown: {pairs}"
    assert not any("/usr/lib" in pair for pair in pairs), f"a path the sandbox shows anyway was bound: {pairs}"


def _venv_in(folder: Path) -> Path:
    """A venv in `folder` (no pip: seconds) that imports this grader's torch, numpy and spec through a .pth
    file, as a grader's venv under /tmp would; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    found = sorted(folder.glob("lib/python3*/site-packages"))
    assert found, f"{folder} has no site-packages"
    paths = dict.fromkeys([str(Path(torch.__file__).parents[1]), sysconfig.get_paths()["purelib"], str(REPO)])
    (found[0] / "grader.pth").write_text("\n".join(paths) + "\n")
    return folder / "bin" / "python"


def _self_check(python: Path) -> str:
    code = "from spec.sandbox import client, containment; print(containment.choose().name, client.self_check())"
    proc = subprocess.run([str(python), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, f"{python} could not run the self-check: {proc.stderr.strip()[-500:]}"
    return proc.stdout.strip()


@pytest.mark.grading
def test_a_grader_whose_venv_is_under_tmp_starts_its_worker(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("venv")
    assert folder.is_relative_to("/tmp"), f"{folder} is not under /tmp, which the sandbox hides"
    said = _self_check(_venv_in(folder / "v"))
    assert said.endswith(" None"), f"the worker did not start for a venv under /tmp: {said}"


@pytest.mark.grading
def test_a_grader_run_through_a_symlinked_interpreter_starts_its_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("linked")
    python = _venv_in(folder / "v")
    (folder / "elsewhere").symlink_to(folder / "v")  # the venv reached through a link to its folder
    said = _self_check(folder / "elsewhere" / "bin" / "python")
    assert said.endswith(" None"), f"the worker did not start through a symlinked interpreter: {said}"
    assert python.is_symlink(), "the venv's python is not a link, so the link was not tested"


# --- the grader's own failures -----------------------------------------------------------------------------


class _Starts(containment.PlainProcess):
    """A plain process that starts `command` instead of the worker."""

    def __init__(self, command: list[str]) -> None:
        self.started = command

    def command(self, worker: Path, folder: Path, hidden: list[Path], data: Path | None) -> list[str]:
        return self.started


def test_a_worker_that_never_says_it_is_ready_is_the_graders_failure(tmp_path: Path) -> None:
    worker = client.Worker(hidden=[tmp_path], sandbox=_Starts([sys.executable, "-c", "print('no torch here')"]))
    try:
        with pytest.raises(SandboxError, match=r"could not start its sandbox \(process\): the worker did not "
                           r"say it was ready; it said: no torch here"):  # fmt: skip
            worker.define({"op": "define", "file": "x.py", "cells": [], "statements": []})
    finally:
        worker.close()
    worker = client.Worker(hidden=[tmp_path], sandbox=_Starts([str(tmp_path / "no-such-python")]))
    try:
        with pytest.raises(SandboxError, match="could not start its sandbox"):
            worker.define({"op": "define", "file": "x.py", "cells": [], "statements": []})
    finally:
        worker.close()


@pytest.fixture
def broken_bwrap(tmp_path: Path) -> dict[str, str]:
    """An environment whose `bwrap` passes the probe (`... true`) and fails every real worker for its own
    reasons, as a bubblewrap without its namespaces would."""
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor last; do :; done\n[ "$last" = true ] && exit 0\n'
                    'echo "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n')  # fmt: skip
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.mark.grading
def test_a_broken_sandbox_grades_no_one_and_says_not_graded(tmp_path: Path, broken_bwrap: dict[str, str]) -> None:
    stem = tmp_path / "report"
    command = [sys.executable, "-m", "pytest", str(REPO / "spec" / "questions"), "--impl", str(SOLUTION),
               "--questions", "Q21", f"--grade-report={stem}", "-q", "-p", "no:cacheprovider",
               "-p", "no:xdist"]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=broken_bwrap, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip
    report = json.loads(Path(f"{stem}.json").read_text())
    error = report.get("error", "")
    assert error.startswith("not graded: the grader could not start its sandbox (bubblewrap)"), (
        f"the printed solution was not 'not graded' under a broken bubblewrap: {str(report)[:300]}"
    )
    assert "setting up uid map" in error, f"the reason bubblewrap gave is not in the report: {error}"
    assert "questions" not in report, "a broken sandbox still gave verdicts"
    assert "not graded: the grader could not start its sandbox" in proc.stdout, proc.stdout[-1500:]
    grade = [sys.executable, "-m", "spec.grade", str(SOLUTION), "--out", str(tmp_path / "g.csv")]
    batch = subprocess.run(grade, cwd=REPO, env=broken_bwrap, capture_output=True, text=True, timeout=600,
                           check=False)  # fmt: skip
    lines = batch.stderr.strip().splitlines()
    assert batch.returncode == 2, f"the batch exited {batch.returncode}, not 2: {batch.stderr[-500:]}"
    assert len(lines) == 1, f"not one line: {batch.stderr}"
    assert "not graded, the batch stopped before its first notebook" in lines[0], lines[0]
    assert not (tmp_path / "g.csv").exists(), "the stopped batch wrote grades"


@pytest.mark.skipif(not BUBBLEWRAP, reason="bubblewrap is not installed, or cannot run here")
def test_the_sandbox_self_check_passes_where_bubblewrap_runs() -> None:
    assert client.self_check() is None, "the sandbox failed its own self-check on a known-good definition"


@pytest.mark.grading
def test_the_autograder_with_a_broken_sandbox_says_not_graded(tmp_path: Path, broken_bwrap: dict[str, str]) -> None:
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "submission" / SOLUTION.name).write_bytes(SOLUTION.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "spec.gradescope", "run", "--root", str(root)], cwd=REPO,
                          env=broken_bwrap, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    results = json.loads((root / "results" / "results.json").read_text())
    tests = results.get("tests", [])
    assert [t.get("name") for t in tests] == ["Not gradable"], f"not one Not gradable test: {tests} {proc.stderr}"
    assert tests[0]["output"].startswith("not graded: the grader could not start its sandbox"), tests[0]["output"]
    assert results.get("score") == 0, f"score {results.get('score')} for a submission nobody graded"


def test_the_sandbox_runs_without_pytest() -> None:
    """spec.sandbox raises its own exceptions: check(), a batch or a script can use it outside a pytest run."""
    code = ("import sys; from spec.sandbox import bounds, client, containment, errors, remote, wire; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, f"spec.sandbox does not import: {proc.stderr.strip()[-500:]}"
    assert proc.stdout.strip() == "[]", f"importing spec.sandbox imports pytest: {proc.stdout.strip()[:300]}"
