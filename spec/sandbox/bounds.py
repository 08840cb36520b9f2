"""Bounds on a worker's processes and memory beyond its own resource limits, whichever this host allows:

- a cgroup of its own, cgroup v1 (a hierarchy per controller) or v2 (one unified hierarchy), beneath the
  grader's own cgroup so that whatever bounds the grader (a container's limit, a test's) bounds it too;
  every process in it dies with the worker;
- else, on cgroup v2 where a systemd user manager runs, a transient scope (`systemd-run --user --scope`)
  with TasksMax and MemoryMax;
- else, for a plain user, RLIMIT_NPROC, which counts every process of the worker's user; memory is then
  bounded by RLIMIT_DATA alone (spec/sandbox/client.py). Not for root: root's processes are counted across
  the whole host (every container's), so no limit set from here can be right, and none is set.

`plan()` says which holds here, once a process, as a `Bounds` (Cgroups, SystemdScope, ProcessRlimit, or
the bare Bounds: none); its `line()` says it in the grade report.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
PROCESSES = 256  # processes and threads at once: a fork bomb stops there
MEMORY_LIMIT = 8 << 30  # bytes: training LeNet on MNIST needs about 2 GB
# The file that bounds each controller's cgroup, by cgroup version, and the bound.
LIMIT_FILES = {
    1: {"pids": "pids.max", "memory": "memory.limit_in_bytes"},
    2: {"pids": "pids.max", "memory": "memory.max"},
}
LIMITS = {"pids": PROCESSES, "memory": MEMORY_LIMIT}
PREFIX = "mnist-lab"  # mnist-lab-PID-name: the grader's PID tells a stale cgroup from a live one
WORDS = {"pids": f"at most {PROCESSES} processes", "memory": f"at most {MEMORY_LIMIT >> 30} GiB resident"}


def version(root: Path | None = None) -> int:
    """2 where `root` is a unified (cgroup2) hierarchy, else 1 (v1, or a hybrid whose controllers are v1's)."""
    return 2 if ((root or CGROUPS) / "cgroup.controllers").is_file() else 1


def _membership() -> str:
    try:
        return Path("/proc/self/cgroup").read_text()
    except OSError:
        return ""


def cgroup_parent(controller: str, membership: str | None = None) -> Path:
    """Where a worker's cgroup goes in cgroup v1: beneath this process's own (`membership`, /proc/self/cgroup's
    lines); the hierarchy's root where this process's own is not mounted there."""
    for line in (_membership() if membership is None else membership).splitlines():
        _, controllers, own = line.split(":", 2)
        if controller in controllers.split(","):
            nested = CGROUPS / controller / own.lstrip("/")
            if nested.is_dir():
                return nested
    return CGROUPS / controller


def own_v2(membership: str | None = None) -> Path:
    """This process's cgroup in the unified hierarchy (its `0::` line)."""
    for line in (_membership() if membership is None else membership).splitlines():
        if line.startswith("0::"):
            own = CGROUPS / line[3:].strip().lstrip("/")
            if own.is_dir():
                return own
    return CGROUPS


def _read(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def delegated_v2(own: Path, wanted: tuple[str, ...] = tuple(LIMITS)) -> tuple[Path, tuple[str, ...]] | None:
    """The nearest cgroup from `own` up to the hierarchy's root beneath which this process may make cgroups
    with `wanted`'s controllers on (cgroup.subtree_control, enabled here where they are not yet and may be),
    and those controllers; None where there is none. A cgroup with processes of its own cannot enable
    controllers for its children (cgroup v2's rule), so an ancestor that already delegates them serves."""
    for cgroup in [own, *own.parents]:
        if not cgroup.is_relative_to(CGROUPS):
            break
        available = _read(cgroup / "cgroup.controllers")
        on = _read(cgroup / "cgroup.subtree_control")
        for controller in wanted:
            if controller in available and controller not in on:
                with contextlib.suppress(OSError):
                    (cgroup / "cgroup.subtree_control").write_text(f"+{controller}")
                    on.add(controller)
        usable = tuple(controller for controller in wanted if controller in on)
        if usable and _may_make(cgroup):
            return cgroup, usable
    return None


def _may_make(parent: Path) -> bool:
    probe = parent / f"{PREFIX}-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return False
    return True


class Bounds:
    """How a worker's processes and memory are bounded here, beyond its own resource limits: nothing, which
    is what root gets where no cgroup can be made (root's processes are counted across the whole host). The
    other bounds below say otherwise; `plan()` picks one. A worker's start asks it for the cgroups to join
    (`cgroup`), the command and environment to start in (`wrap`, `scope_env`) and more resource limits
    (`rlimits`)."""

    how = "none"  # the bound's name, as the report says it

    def line(self) -> str:
        """The bounds, for the grade report's sandbox line."""
        return ", no bound on its processes (root, where no cgroup can be made)"

    def cgroup(self, name: str) -> list[Path]:
        """The cgroups one worker joins, made for it; remove_cgroup removes each."""
        return []

    def wrap(self, command: list[str], env: dict[str, str]) -> list[str]:
        """The worker's command; `env` is the worker's own environment."""
        return command

    def scope_env(self, env: dict[str, str]) -> dict[str, str]:
        """The environment the worker's command starts in."""
        return env

    def rlimits(self) -> list[tuple[int, int]]:
        """Resource limits beyond the worker's own, worked out in the grader before the worker starts."""
        return []


@dataclass(frozen=True)
class Cgroups(Bounds):
    """A cgroup of its own for each worker, bounded in each of `controllers`; `parents` where each
    controller's worker cgroups go. In cgroup v2 one cgroup holds every controller."""

    version: int
    controllers: tuple[str, ...]
    parents: tuple[tuple[str, Path], ...]

    @property
    def how(self) -> str:  # type: ignore[override]
        return f"cgroup v{self.version}"

    def line(self) -> str:
        return _said(self.controllers, self.how)

    def parent(self, controller: str) -> Path:
        return dict(self.parents)[controller]

    def cgroup(self, name: str) -> list[Path]:
        """A cgroup `mnist-lab-PID-name` bounded in each controller, for one worker."""
        made = (bounded_cgroup(controller, name, LIMITS[controller], self) for controller in self.controllers)
        return list(dict.fromkeys(cgroup for cgroup in made if cgroup is not None))


class SystemdScope(Bounds):
    """A transient systemd user scope with TasksMax and MemoryMax, where cgroup v2 delegates no cgroup."""

    how = "systemd scope"

    def line(self) -> str:
        return _said(tuple(LIMITS), self.how)

    def wrap(self, command: list[str], env: dict[str, str]) -> list[str]:
        scope = [shutil.which("systemd-run") or "systemd-run", "--user", "--scope", "--quiet", "--collect",
                 f"--property=TasksMax={PROCESSES}", f"--property=MemoryMax={MEMORY_LIMIT}"]  # fmt: skip
        # systemd-run needs the user manager's address; the worker gets its own environment back.
        return [*scope, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]

    def scope_env(self, env: dict[str, str]) -> dict[str, str]:
        passed = {k: os.environ[k] for k in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS") if k in os.environ}
        return {**env, **passed}


class ProcessRlimit(Bounds):
    """RLIMIT_NPROC, for a plain user: it counts every process of the worker's user."""

    how = "rlimit"

    def line(self) -> str:
        return f", at most {PROCESSES} processes of its user beyond those running (RLIMIT_NPROC)"

    def rlimits(self) -> list[tuple[int, int]]:
        return [(resource.RLIMIT_NPROC, process_limit())]


def _said(controllers: tuple[str, ...], how: str) -> str:
    return "".join(f", {WORDS[controller]} ({how})" for controller in controllers)


def cgroup_controllers() -> tuple[str, ...]:
    """The controllers in which each worker gets a bounded cgroup of its own here."""
    bound = plan()
    return bound.controllers if isinstance(bound, Cgroups) else ()


def bounded_cgroup(controller: str, name: str, value: int, bounds: Bounds | None = None) -> Path | None:
    """A cgroup `mnist-lab-PID-name` beneath `bounds`' parent for `controller`, its bound set to `value`, or
    None where it cannot be made; remove_cgroup removes it. (In cgroup v2 a cgroup holds processes or turns
    controllers on for its children, never both: a worker's holds the worker.)"""
    bounds = bounds or plan()
    if not isinstance(bounds, Cgroups) or controller not in bounds.controllers:
        return None
    cgroup = bounds.parent(controller) / f"{PREFIX}-{os.getpid()}-{name}"
    try:
        cgroup.mkdir(exist_ok=True)
        (cgroup / LIMIT_FILES[bounds.version][controller]).write_text(str(value))
    except OSError:
        return None
    return cgroup


@functools.cache
def plan() -> Bounds:
    """The bounds this host allows, the strongest first; cgroups that a grader which ended without cleaning
    up left behind are removed here, with anything still in them."""
    if version() == 1:
        parents = []
        for controller in LIMITS:
            parent = cgroup_parent(controller)
            if _may_make(parent):
                parents.append((controller, parent))
                _remove_stale(parent)
        if parents:
            return Cgroups(1, tuple(c for c, _ in parents), tuple(parents))
    else:
        found = delegated_v2(own_v2())
        if found is not None:
            parent, controllers = found
            _remove_stale(parent)
            bounds = Cgroups(2, controllers, tuple((c, parent) for c in controllers))
            if _joinable(bounds):
                return bounds
        if _user_manager():
            return SystemdScope()
    return Bounds() if _is_root() else ProcessRlimit()


def _is_root() -> bool:
    return os.geteuid() == 0


def _joinable(bounds: Cgroups) -> bool:
    """Whether a process can be started inside a cgroup made as a worker's is: cgroup v2 refuses one where the
    kernel's rules do not allow it (a cgroup whose controllers are on for its children, a move across a
    delegation boundary), so a cgroup that can be made is not yet one that bounds a worker."""
    made = bounds.cgroup("probe")
    try:
        join = functools.partial(join_cgroups, made)
        return bool(made) and subprocess.run(["true"], preexec_fn=join, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        for cgroup in made:
            remove_cgroup(cgroup, tries=2)


def join_cgroups(cgroups: list[Path]) -> None:
    for cgroup in cgroups:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))


def _user_manager() -> bool:
    """Whether a systemd user manager runs for this user, and systemd-run can reach it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not (Path(runtime) / "systemd" / "private").exists() or not shutil.which("systemd-run"):
        return False
    probe = ["systemd-run", "--user", "--scope", "--quiet", "--collect", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _remove_stale(parent: Path) -> None:
    for stale in parent.glob(f"{PREFIX}-*"):
        owner = stale.name.split("-")[2]
        if owner.isdigit() and not _alive(int(owner)):
            remove_cgroup(stale, tries=2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_cgroup(cgroup: Path, tries: int = 40) -> None:
    """Kill whatever is left in the worker's cgroup (a child that left its process group too), then remove it."""
    for _ in range(tries):
        if not cgroup.exists():
            return
        with contextlib.suppress(OSError):
            for pid in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
            cgroup.rmdir()
            return
        time.sleep(0.05)


def process_limit(running: int | None = None) -> int:
    """RLIMIT_NPROC for a worker where nothing else bounds its processes: those of its user running now, and
    PROCESSES more."""
    if running is None:
        uid = os.getuid()
        running = 0
        for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
            with contextlib.suppress(OSError):
                if task.stat().st_uid == uid:
                    running += 1
    return running + PROCESSES
