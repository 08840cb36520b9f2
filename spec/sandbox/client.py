"""The grader's side of the sandbox: a worker process, contained, asked in plain data, read with a deadline.

The worker (spec/sandbox/worker.py) is spawned fresh, never forked from the grader, in an empty temporary
folder, with a scrubbed environment and only its two pipes open. Where bubblewrap runs (`apt-get install
bubblewrap`), it runs inside it: a read-only root, no network, its own user (nobody), process and IPC
namespaces, the checkout (the spec, the data, mnist_lab) and the submission's own folder hidden, only its
temporary folder writable; the interpreter's own folders are shown wherever they are (a venv under /tmp,
in the checkout, behind links). Everywhere, resource limits: file size, open files, memory (RLIMIT_DATA),
core dumps; and a bound on its processes and memory, whichever this host allows (spec/sandbox/bounds.py).
`Containment.line()` says which a run had. A worker says it is ready before any student code reaches it:
one that never does is the grader's failure (SandboxError, "not graded"), never the student's.

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
import site
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

from spec.sandbox import bounds, wire

WORKER = Path(__file__).with_name("worker.py")
REPO = WORKER.parents[2]
FILE_LIMIT = 256 << 20  # bytes of any one file the worker writes, its output log included
OPEN_FILES = 256
GREETING_TIMEOUT = 300  # seconds for a fresh worker to import torch and say it is ready, on a loaded machine
BY_VALUE = 1 << 20  # bytes: a tensor larger than this reaches the worker as a file it maps, once
SIGNALS = {
    signal.SIGKILL: "was killed (SIGKILL: out of memory, or a limit)",
    signal.SIGXCPU: "ran out of CPU time (SIGXCPU)",
    signal.SIGSEGV: "crashed (SIGSEGV)",
    signal.SIGABRT: "aborted (SIGABRT)",
}


class WorkerError(Exception):
    """The worker died, hung or answered with what is not a message: one line that says how."""


class SandboxError(Exception):
    """The grader could not start a worker: the grader's failure, never the student's (no student code had
    run when it happened). One line that says why."""


@dataclass(frozen=True)
class Containment:
    kind: str  # "bubblewrap" or "process"

    def line(self) -> str:
        cgroups = bounds.plan().line()
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
        self.greeted = False  # whether this worker said it is ready: until then a failure is the grader's
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
        args += interpreter_binds([Path("/tmp"), *hidden])  # a venv under /tmp, in the checkout, ...
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
        for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):  # LD_LIBRARY_PATH: an interpreter may need it
            if name in os.environ:
                env[name] = os.environ[name]
        plan = bounds.plan()
        self.cgroups = self._cgroups()
        nproc = bounds.process_limit() if plan.how == "rlimit" else None
        try:
            with (self.folder / "sandbox.log").open("wb") as log:  # bubblewrap's own complaints, if any
                self.proc = subprocess.Popen(
                    plan.wrap(self.command(), env), stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=self.folder,
                    env=plan.scope_env(env), pass_fds=[write], start_new_session=True,
                    preexec_fn=functools.partial(_limits, self.cgroups, nproc),
                )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as err:  # SubprocessError: _limits failed in the child
            os.close(read)
            self.kill()
            raise self._not_started(str(err)) from None
        finally:
            os.close(write)
        self.replies = read
        self.generation += 1
        self.greeted = False

    def _cgroups(self) -> list[Path]:
        """A cgroup bounded in each controller that can have one here (spec/sandbox/bounds.py), for the next
        worker."""
        name = f"{id(self)}-{self.generation}"
        return bounds.plan().cgroup(name)

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        for cgroup in self.cgroups:
            bounds.remove_cgroup(cgroup)
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

    def _greet(self) -> None:
        """Wait for a fresh worker to say it is ready, before any student code reaches it: a worker that cannot
        start (an interpreter the sandbox hides, a broken bubblewrap, torch that does not import) is the
        grader's failure, a SandboxError, never the notebook's."""
        try:
            hello = wire.receive(_Deadline(self.replies, time.monotonic() + GREETING_TIMEOUT))
            if hello.get("ready") is not True:
                raise wire.WireError(f"it said {str(hello)[:100]} for hello")
        except (TimeoutError, EOFError, wire.WireError) as err:
            why = "did not say it was ready" if isinstance(err, TimeoutError | EOFError) else str(err)
            said = self._said()
            self.kill()
            raise self._not_started(f"the worker {why}{'; it said: ' + said if said else ''}") from None
        except BaseException:  # pytest-timeout's signal, Ctrl-C: a worker half started is no worker
            self.kill()
            raise
        self.greeted = True

    def _not_started(self, why: str) -> SandboxError:
        return SandboxError(f"the grader could not start its sandbox ({self.sandbox.kind}): {why}")

    def _said(self) -> str:
        """The last line the worker or bubblewrap wrote before it died, if any."""
        for log in ("sandbox.log", "worker-output.log"):
            with contextlib.suppress(OSError):
                lines = (self.folder / log).read_text(errors="replace").strip().splitlines()
                if lines:
                    return lines[-1][:200]
        return ""

    def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        if not self.greeted:
            self._greet()
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


def _limits(cgroups: list[Path], processes: int | None) -> None:
    """In the child, before it runs the worker: the resource limits, and the cgroups its processes share;
    RLIMIT_NPROC where no cgroup or scope bounds its processes."""
    bounds.join_cgroups(cgroups)
    limits = [(resource.RLIMIT_FSIZE, FILE_LIMIT), (resource.RLIMIT_NOFILE, OPEN_FILES),
              (resource.RLIMIT_DATA, bounds.MEMORY_LIMIT), (resource.RLIMIT_CORE, 0)]  # fmt: skip
    if processes is not None:
        limits.append((resource.RLIMIT_NPROC, processes))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))


def interpreter_paths() -> list[str]:
    """What this interpreter needs to start and import torch: its prefixes (a venv's, its base's, the real
    installation's), its site-packages, torch's and numpy's, the folders of LD_LIBRARY_PATH, then its
    executable and every link on the way to it."""
    real = Path(os.path.realpath(sys.executable))
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(real.parent.parent)]
    paths += [*site.getsitepackages(), *(str(Path(m.__file__).parent.parent) for m in (torch, np))]
    paths += [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), sys.executable]
    return [os.path.abspath(path) for path in dict.fromkeys(paths) if path]


def interpreter_binds(hidden: list[Path]) -> list[str]:
    """bubblewrap's arguments that show the interpreter's paths (interpreter_paths) where a folder in `hidden`
    would hide them: the real folders and files read-only, and every symbolic link on the way to them (a
    link to the venv, to the interpreter) made again as a link."""

    def hides(path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in hidden)

    links: dict[Path, str] = {}
    real: list[Path] = []
    queue = [Path(path) for path in interpreter_paths()]
    while queue and len(links) < 64:  # a loop of links ends here
        path = queue.pop(0)
        for step in [*reversed(path.parents), path]:
            if step.is_symlink() and step not in links:
                links[step] = os.readlink(step)
                queue.append(step.parent / links[step])
        if path.exists():
            real.append(Path(os.path.realpath(path)))
    shown: list[Path] = []
    for path in sorted(dict.fromkeys(real), key=lambda p: len(p.parts)):  # a folder before what is in it
        if hides(path) and not any(path.is_relative_to(folder) for folder in shown):
            shown.append(path)
    # A link inside a folder shown is there already; one reached through another link, as that link's target.
    made = [link for link in links if link.parent == Path(os.path.realpath(link.parent))
            and hides(link) and not any(link.is_relative_to(folder) for folder in shown)]  # fmt: skip
    return [*(arg for path in shown for arg in ("--ro-bind", str(path), str(path))),
            *(arg for link in made for arg in ("--symlink", links[link], str(link)))]  # fmt: skip


SELF_CHECK = "def double(x):\n    return x * 2\n"  # a known-good definition, asked as grading asks a student's


def self_check(data: Path | None = None) -> str | None:
    """Start a worker as grading starts one, build a known-good definition in it and call it: None where that
    works, else one line that says why grading cannot run here. A batch and the autograder run it before
    grading anyone, so that a broken sandbox stops them once, not fails every student."""
    with tempfile.TemporaryDirectory(prefix="mnist-lab-self-check-") as submission:
        worker = Worker(hidden=[Path(submission)], data=data)
        cell = {"filename": "<self-check>", "source": SELF_CHECK, "label": "self-check", "script": True}
        try:
            defined = worker.define({"op": "define", "file": "self-check.py", "cells": [cell],
                                     "statements": [{"filename": "<self-check>", "index": 0}]})  # fmt: skip
            if defined["failed"]:
                return f"the grader's sandbox cannot build a known-good definition: {defined['failed'][0]}"
            argument = {"__tensor__": np.arange(3.0), "device": "cpu", "requires_grad": False}
            reply = worker.request({"op": "call", "name": "double", "args": [argument], "kwargs": {}}, timeout=120)
        except (SandboxError, WorkerError) as err:
            return str(err) if isinstance(err, SandboxError) else f"the grader's sandbox failed its self-check: {err}"
        finally:
            worker.close()
    value = reply.get("value")
    got = value.get("__tensor__") if isinstance(value, dict) else None
    if got is None or not np.array_equal(got, [0.0, 2.0, 4.0]):
        return f"the grader's sandbox answered its self-check wrongly: {str(reply)[:200]}"
    return None
