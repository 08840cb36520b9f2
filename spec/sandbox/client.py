"""The grader's side of the sandbox: a worker process, contained, asked in plain data, read with a deadline.

The worker (spec/sandbox/worker.py) is spawned fresh, never forked from the grader, in an empty temporary
folder, with a scrubbed environment and only its two pipes open, inside this host's containment
(spec/sandbox/containment.py: bubblewrap where it runs, else a plain process). Everywhere, resource limits:
file size, open files, memory (RLIMIT_DATA), core dumps; and the containment's bound on its processes and
memory (spec/sandbox/bounds.py). A worker says it is ready before any student code reaches it: one that
never does is the grader's failure (SandboxError, "not graded"), never the student's.

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
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spec.sandbox import bounds, containment, wire
from spec.sandbox.errors import SandboxError, WorkerError

WORKER = Path(__file__).with_name("worker.py")
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

    def __init__(
        self, hidden: list[Path], sandbox: containment.Containment | None = None, data: Path | None = None
    ) -> None:
        self.hidden = hidden  # folders the worker must not see: the submission's own
        self.data = data  # the prepared MNIST (spec/harness/prepared.py), which the worker maps read-only
        self.sandbox = sandbox or containment.choose()
        self.folder = Path(tempfile.mkdtemp(prefix="mnist-lab-worker-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.replies = -1
        self.definitions: dict[str, Any] | None = None  # replayed by every fresh worker
        self.generation = 0  # how many workers were started: a handle is valid only in its own
        self.cgroups: list[Path] = []
        self.greeted = False  # whether this worker said it is ready: until then a failure is the grader's
        self._files: _Files = {}  # those written for this worker

    # --- the process ----------------------------------------------------------------------------------

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
        bound = self.sandbox.bound
        self.cgroups = bound.cgroup(f"{id(self)}-{self.generation}")
        command = self.sandbox.command(WORKER, self.folder, self.hidden, self.data)
        try:
            with (self.folder / "sandbox.log").open("wb") as log:  # bubblewrap's own complaints, if any
                self.proc = subprocess.Popen(
                    bound.wrap(command, env), stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=self.folder,
                    env=bound.scope_env(env), pass_fds=[write], start_new_session=True,
                    preexec_fn=functools.partial(_limits, self.cgroups, bound.rlimits()),
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
            if hello != wire.READY:
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
        return SandboxError(f"the grader could not start its sandbox ({self.sandbox.name}): {why}")

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
        code = self.sandbox.exit_code(code)
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
            return {**spec, wire.TENSOR: plain.cpu().numpy()}
        shared = _file_of(_MAPPED, tensor) if self.data is not None and self.sandbox.isolated else None
        if shared is not None and Path(shared).parent == self.data and os.path.isfile(shared):
            return {**spec, wire.FILE: shared}
        file = _file_of(self._files, tensor)
        if file is None:
            file = str(self.folder / f"data-{len(self._files)}.npy")
            np.save(file, plain.cpu().numpy(), allow_pickle=False)
            self._files[id(tensor)] = (weakref.ref(tensor), file, tensor._version)
        return {**spec, wire.FILE: file}


def _limits(cgroups: list[Path], more: list[tuple[int, int]]) -> None:
    """In the child, before it runs the worker: the resource limits, the bound's own (`more`), and the cgroups
    its processes share."""
    bounds.join_cgroups(cgroups)
    limits = [(resource.RLIMIT_FSIZE, FILE_LIMIT), (resource.RLIMIT_NOFILE, OPEN_FILES),
              (resource.RLIMIT_DATA, bounds.MEMORY_LIMIT), (resource.RLIMIT_CORE, 0), *more]  # fmt: skip
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))


SELF_CHECK = "def double(x):\n    return x * 2\n"  # a known-good definition, asked as grading asks a student's


def self_check(data: Path | None = None) -> str | None:
    """Start a worker as grading starts one, build a known-good definition in it and call it: None where that
    works, else one line that says why grading cannot run here. A batch and the autograder run it before
    grading anyone, so that a broken sandbox stops them once, not fails every student."""
    with tempfile.TemporaryDirectory(prefix="mnist-lab-self-check-") as submission:
        worker = Worker(hidden=[Path(submission)], data=data)
        cell = {"filename": "<self-check>", "source": SELF_CHECK, "label": "self-check", "script": True}
        try:
            defined = worker.define({"op": wire.DEFINE, "file": "self-check.py", "cells": [cell],
                                     "statements": [{"filename": "<self-check>", "index": 0}]})  # fmt: skip
            if defined["failed"]:
                return f"the grader's sandbox cannot build a known-good definition: {defined['failed'][0]}"
            argument = {wire.TENSOR: np.arange(3.0), "device": "cpu", "requires_grad": False}
            reply = worker.request({"op": wire.CALL, "name": "double", "args": [argument], "kwargs": {}}, timeout=120)
        except (SandboxError, WorkerError) as err:
            return str(err) if isinstance(err, SandboxError) else f"the grader's sandbox failed its self-check: {err}"
        finally:
            worker.close()
    value = reply.get("value")
    got = value.get(wire.TENSOR) if isinstance(value, dict) else None
    if got is None or not np.array_equal(got, [0.0, 2.0, 4.0]):
        return f"the grader's sandbox answered its self-check wrongly: {str(reply)[:200]}"
    return None
