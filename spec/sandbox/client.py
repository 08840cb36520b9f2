"""The grader's side of the sandbox: a worker process, contained, asked in plain data, read with a deadline.

The worker (spec/sandbox/worker.py) is spawned fresh, never forked from the grader, in an empty temporary
folder, with a scrubbed environment and only its two pipes open. Where bubblewrap runs (`apt-get install
bubblewrap`), it runs inside it: a read-only root, no network, its own user (nobody), process and IPC
namespaces, the checkout (the spec, the data, mnist_lab) and the submission's own folder hidden, only its
temporary folder writable. Everywhere, resource limits: file size, open files, memory (RLIMIT_DATA), core
dumps; and, where cgroups can be made, a bound on its processes and on its memory, and every process in
them dies with it.
`Containment.line()` says which a run had.

A worker that dies, hangs past the caller's time limit or sends what is not a message is killed with its
whole process group; the next request starts a fresh one and replays the notebook's definitions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spec.sandbox import wire

WORKER = Path(__file__).with_name("worker.py")
REPO = WORKER.parents[2]
FILE_LIMIT = 256 << 20  # bytes of any one file the worker writes, its output log included
MEMORY_LIMIT = 8 << 30  # bytes of data segment: training LeNet on MNIST needs about 2 GB
OPEN_FILES = 256
PROCESSES = 256  # processes and threads at once, where a pids cgroup can be made: a fork bomb stops there
CGROUPS = Path("/sys/fs/cgroup")  # cgroup v1: a hierarchy per controller
CGROUP_LIMITS = {"pids": ("pids.max", PROCESSES), "memory": ("memory.limit_in_bytes", MEMORY_LIMIT)}
BY_VALUE = 1 << 20  # bytes: a tensor larger than this reaches the worker as a file it maps, once
SIGNALS = {
    signal.SIGKILL: "was killed (SIGKILL: out of memory, or a limit)",
    signal.SIGXCPU: "ran out of CPU time (SIGXCPU)",
    signal.SIGSEGV: "crashed (SIGSEGV)",
    signal.SIGABRT: "aborted (SIGABRT)",
}


class WorkerError(Exception):
    """The worker died, hung or answered with what is not a message: one line that says how."""


@dataclass(frozen=True)
class Containment:
    kind: str  # "bubblewrap" or "process"

    def line(self) -> str:
        bounds = {"pids": f", at most {PROCESSES} processes", "memory": f", at most {MEMORY_LIMIT >> 30} GiB resident"}
        cgroups = "".join(bounds[controller] for controller in cgroup_controllers())
        if self.kind == "bubblewrap":
            return ("in a worker under bubblewrap: read-only root, no network, user nobody, the checkout and the "
                    f"submission's folder hidden, resource limits{cgroups}")  # fmt: skip
        return ("in a worker process without bubblewrap (not installed, or it cannot run here): resource limits "
                f"only{cgroups}; the network and whatever this user can read were reachable")  # fmt: skip


@functools.cache
def containment() -> Containment:
    """Bubblewrap where it is installed and can make its namespaces here, else a plain process."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None:
        probe = [bwrap, *_BWRAP_BASE, "--uid", "65534", "--gid", "65534", "true"]
        if subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0:
            return Containment("bubblewrap")
    return Containment("process")


@functools.cache
def cgroup_controllers() -> tuple[str, ...]:
    """The controllers of CGROUP_LIMITS in which this process may make cgroups (cgroup v1, as root in most
    containers). Those a grader that ended without cleaning up left behind are removed here, with anything
    still in them."""
    usable = []
    for controller in CGROUP_LIMITS:
        parent = cgroup_parent(controller)
        probe = parent / f"mnist-lab-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            continue
        usable.append(controller)
        for stale in parent.glob("mnist-lab-*"):
            owner = stale.name.split("-")[2]
            if owner.isdigit() and not _alive(int(owner)):
                remove_cgroup(stale, tries=2)
    return tuple(usable)


def cgroup_parent(controller: str, membership: str | None = None) -> Path:
    """Where a worker's cgroup goes: beneath this process's own (`membership`, /proc/self/cgroup's lines),
    so that whatever bounds the grader (a container's limit, a test's) bounds its workers too; the
    hierarchy's root where this process's own is not mounted there."""
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            membership = ""
    for line in membership.splitlines():
        _, controllers, own = line.split(":", 2)
        if controller in controllers.split(","):
            nested = CGROUPS / controller / own.lstrip("/")
            if nested.is_dir():
                return nested
    return CGROUPS / controller


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_BWRAP_BASE = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
               "--proc", "/proc", "--tmpfs", "/tmp"]  # fmt: skip


def generator_states() -> dict[str, Any]:
    """This process's generators, for the worker to draw from as this process would have."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, np.array(internal, dtype=np.uint64), gauss],
        "numpy": [name, keys, int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state().numpy()
    return states


# A tensor's .npy file, by the tensor's id: (the tensor, the file, the tensor's version when it was the file).
_Files = dict[int, tuple[weakref.ref[torch.Tensor], str, int]]
_MAPPED: _Files = {}  # the prepared MNIST's tensors, mapped from their files (spec/harness/prepared.py)


def mapped(tensor: torch.Tensor, file: str) -> torch.Tensor:
    """Note that `tensor` is the whole of the .npy `file`, mapped: while unchanged, it is sent as that file."""
    _MAPPED[id(tensor)] = (weakref.ref(tensor), file, tensor._version)
    return tensor


def _file_of(files: _Files, tensor: torch.Tensor) -> str | None:
    """The file `tensor` is in `files`, where it is that very tensor and nothing has changed it since."""
    known = files.get(id(tensor))
    return known[1] if known is not None and known[0]() is tensor and known[2] == tensor._version else None


class _Deadline:
    """A pipe read with a deadline, for wire.receive."""

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd, self.deadline = fd, deadline

    def readinto(self, buffer: memoryview) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            raise TimeoutError
        return os.readv(self.fd, [buffer])


class Worker:
    """One notebook's worker: started on the first request, restarted after a failure."""

    def __init__(self, hidden: list[Path], sandbox: Containment | None = None, data: Path | None = None) -> None:
        self.hidden = hidden  # folders the worker must not see: the submission's own
        self.data = data  # the prepared MNIST (spec/harness/prepared.py), which the worker maps read-only
        self.sandbox = sandbox or containment()
        self.folder = Path(tempfile.mkdtemp(prefix="mnist-lab-worker-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.replies = -1
        self.definitions: dict[str, Any] | None = None  # replayed by every fresh worker
        self.generation = 0  # how many workers were started: a handle is valid only in its own
        self.cgroups: list[Path] = []
        self._files: _Files = {}  # those written for this worker

    # --- the process ----------------------------------------------------------------------------------

    def command(self) -> list[str]:
        python = [sys.executable, "-I"]
        if self.sandbox.kind == "process":
            return [*python, str(WORKER)]
        sandbox = "/tmp/mnist-lab-sandbox"
        args = [shutil.which("bwrap") or "bwrap", *_BWRAP_BASE]
        args += ["--dev-bind", "/dev", "/dev"] if torch.cuda.is_available() else ["--dev", "/dev"]
        hidden = [*self.hidden, REPO]
        for folder in hidden:
            args += ["--tmpfs", str(folder)]
        for needed in dict.fromkeys([sys.base_prefix, sys.prefix]):  # Python itself, and a venv in the checkout
            if any(Path(needed).is_relative_to(folder) for folder in hidden):
                args += ["--ro-bind", needed, needed]
        args += ["--ro-bind", str(WORKER.parent), sandbox, "--bind", str(self.folder), str(self.folder)]
        if self.data is not None:
            args += ["--ro-bind", str(self.data), str(self.data)]
        args += ["--chdir", str(self.folder), "--uid", "65534", "--gid", "65534"]
        return [*args, *python, f"{sandbox}/worker.py"]

    def start(self) -> None:
        """A fresh worker, with the notebook's definitions replayed where they are known."""
        self.spawn()
        if self.definitions is not None:  # a replay: the first worker's account of them stands
            self._exchange(self.definitions, timeout=600)

    def spawn(self) -> None:
        """Start the process and return at once: it imports torch while the grader collects its tests."""
        read, write = os.pipe()
        threads = str(torch.get_num_threads())
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.folder), "LANG": "C.UTF-8", "OMP_NUM_THREADS": threads,
               "MNIST_LAB_REPLY_FD": str(write)}  # fmt: skip
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        self.cgroups = self._cgroups()
        try:
            with (self.folder / "sandbox.log").open("wb") as log:  # bubblewrap's own complaints, if any
                self.proc = subprocess.Popen(
                    self.command(), stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=self.folder, env=env,
                    pass_fds=[write], start_new_session=True, preexec_fn=functools.partial(_limits, self.cgroups),
                )  # fmt: skip
        finally:
            os.close(write)
        self.replies = read
        self.generation += 1

    def _cgroups(self) -> list[Path]:
        """A cgroup with its CGROUP_LIMITS bound in each controller that has them, for the next worker."""
        name = f"{id(self)}-{self.generation}"
        made = (bounded_cgroup(controller, name, CGROUP_LIMITS[controller][1]) for controller in cgroup_controllers())
        return [cgroup for cgroup in made if cgroup is not None]

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
        self.cgroups = []
        if self.replies >= 0:
            os.close(self.replies)
            self.replies = -1

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- requests -------------------------------------------------------------------------------------

    def define(self, definitions: dict[str, Any]) -> dict[str, Any]:
        """Build the notebook's definitions in the worker; what raised, and the names they bound."""
        self.definitions = definitions
        if self.proc is None:
            self.spawn()
        return self._exchange(definitions, timeout=600)

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The worker's reply, or WorkerError; any failure, or an interruption, ends the worker."""
        if self.proc is None:
            self.start()
        return self._exchange({**message, "rng": generator_states()}, timeout)

    def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        try:
            wire.send(self.proc.stdin, message)
            return wire.receive(_Deadline(self.replies, time.monotonic() + timeout))
        except TimeoutError:
            self.kill()
            raise WorkerError(f"did not return within {timeout:g} s; the worker was stopped") from None
        except (EOFError, BrokenPipeError, wire.WireError) as err:
            why = self._death() if not isinstance(err, wire.WireError) else f"sent a malformed reply: {err}"
            self.kill()
            raise WorkerError(why) from None
        except BaseException as err:  # pytest-timeout's signal, Ctrl-C: the worker is mid-call
            where = self.folder / "where.txt"
            if where.is_file():  # where the student's code was, for the failure's message
                err.student_location = where.read_text(errors="replace")[:300] or None  # type: ignore[attr-defined]
            self.kill()
            raise

    def _death(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "closed its reply pipe and went on running"
        if code > 128 and self.sandbox.kind == "bubblewrap":  # bwrap exits 128 + the signal that ended its child
            code = 128 - code
        if code < 0:
            return f"ended the worker: it {SIGNALS.get(-code, f'was killed by signal {-code}')}"
        said = (self.folder / "sandbox.log").read_text(errors="replace").strip().splitlines()
        last = f"; it said: {said[-1][:200]}" if code != 0 and said else ""
        return f"ended the worker: it exited with code {code} (os._exit, or a crash){last}"

    def tensor(self, tensor: torch.Tensor) -> dict[str, Any]:
        """A tensor as a request's argument: by value, or, if large, as a file the worker maps: the prepared
        MNIST's own file, which only a bubblewrapped worker sees read-only, or one written for it, once."""
        plain = tensor.detach()
        spec: dict[str, Any] = {"device": tensor.device.type, "requires_grad": bool(tensor.requires_grad)}
        if plain.numel() * plain.element_size() <= BY_VALUE:
            return {**spec, "__tensor__": plain.cpu().numpy()}
        shared = _file_of(_MAPPED, tensor) if self.data is not None and self.sandbox.kind == "bubblewrap" else None
        if shared is not None and Path(shared).parent == self.data and os.path.isfile(shared):
            return {**spec, "__file__": shared}
        file = _file_of(self._files, tensor)
        if file is None:
            file = str(self.folder / f"data-{len(self._files)}.npy")
            np.save(file, plain.cpu().numpy(), allow_pickle=False)
            self._files[id(tensor)] = (weakref.ref(tensor), file, tensor._version)
        return {**spec, "__file__": file}


def bounded_cgroup(controller: str, name: str, value: int) -> Path | None:
    """A cgroup `mnist-lab-PID-name` of `controller` beneath this process's own, its CGROUP_LIMITS bound set to
    `value`, or None where it cannot be made; remove_cgroup removes it."""
    cgroup = cgroup_parent(controller) / f"mnist-lab-{os.getpid()}-{name}"
    try:
        cgroup.mkdir(exist_ok=True)
        (cgroup / CGROUP_LIMITS[controller][0]).write_text(str(value))
    except OSError:
        return None
    return cgroup


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


def _limits(cgroups: list[Path]) -> None:
    """In the child, before it runs the worker: the resource limits, and the cgroups its processes share."""
    for cgroup in cgroups:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    for limit, value in ((resource.RLIMIT_FSIZE, FILE_LIMIT), (resource.RLIMIT_NOFILE, OPEN_FILES),
                         (resource.RLIMIT_DATA, MEMORY_LIMIT), (resource.RLIMIT_CORE, 0)):  # fmt: skip
        resource.setrlimit(limit, (value, value))
