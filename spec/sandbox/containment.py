"""Where a worker runs: `choose()` picks, once a process, the strongest this host allows.

- `Bubblewrap` (`apt-get install bubblewrap`): a read-only root, no network, its own user (nobody), process
  and IPC namespaces, the checkout (the spec, the data, mnist_lab) and the submission's own folder hidden,
  only the worker's temporary folder writable; the interpreter's own folders are shown wherever they are
  (a venv under /tmp, in the checkout, behind links).
- `PlainProcess`: the worker as a process of the grader's user, with resource limits only.

Both are bounded by whatever bounds this host allows (spec/sandbox/bounds.py), which they compose. A
containment says how to start a worker (`command`), how to read its exit (`exit_code`), whether files the
grader maps stay out of the student's reach (`isolated`) and what it is (`line`, for the grade report).
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from spec.sandbox import bounds

REPO = Path(__file__).resolve().parents[2]
_BWRAP_BASE = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
               "--proc", "/proc", "--tmpfs", "/tmp"]  # fmt: skip
SANDBOX = "/tmp/mnist-lab-sandbox"  # where the worker's own files are shown inside bubblewrap
PRIVATE = "private"  # the folder within the prepared MNIST (spec/harness/prepared.py) a worker never sees: labels


class Containment(ABC):
    name: str  # as the grader's messages name it
    isolated: bool  # the root read-only, no network, the checkout and classmates hidden from the worker

    @property
    def bound(self) -> bounds.Bounds:
        """The bound on the worker's processes and memory: this host's, picked once (bounds.plan())."""
        return bounds.plan()

    @abstractmethod
    def command(self, worker: Path, folder: Path, hidden: list[Path], data: Path | None) -> list[str]:
        """The command that runs the worker script `worker` in `folder`, its working folder, with `hidden`
        out of its sight and `data` (the prepared MNIST) shown read-only where it can be."""

    def exit_code(self, code: int) -> int:
        """The worker's own exit code from that of the process started: negative for a signal."""
        return code

    @abstractmethod
    def line(self) -> str:
        """Where graded code ran, for the grade report."""


class Bubblewrap(Containment):
    name, isolated = "bubblewrap", True

    def command(self, worker: Path, folder: Path, hidden: list[Path], data: Path | None) -> list[str]:
        args = [shutil.which("bwrap") or "bwrap", *_BWRAP_BASE]
        args += ["--dev-bind", "/dev", "/dev"] if torch.cuda.is_available() else ["--dev", "/dev"]
        hidden = [*hidden, REPO]
        for place in hidden:
            args += ["--tmpfs", str(place)]
        args += interpreter_binds([Path("/tmp"), *hidden])  # a venv under /tmp, in the checkout, ...
        args += ["--ro-bind", str(worker.parent), SANDBOX, "--bind", str(folder), str(folder)]
        if data is not None:
            (data / PRIVATE).mkdir(parents=True, exist_ok=True)  # bubblewrap hides a folder that exists
            args += ["--ro-bind", str(data), str(data), "--tmpfs", str(data / PRIVATE)]
        for copy in mnist_copies():  # last: over the binds that would show them (an installed wheel's)
            if not any(copy.is_relative_to(place) for place in hidden):
                args += ["--tmpfs", str(copy)]
        args += ["--chdir", str(folder), "--uid", "65534", "--gid", "65534"]
        return [*args, sys.executable, "-I", f"{SANDBOX}/{worker.name}"]

    def exit_code(self, code: int) -> int:
        return 128 - code if code > 128 else code  # bwrap exits 128 + the signal that ended its child

    def line(self) -> str:
        return ("in a worker under bubblewrap: read-only root, no network, user nobody, the checkout and the "
                f"submission's folder hidden, resource limits{self.bound.line()}")  # fmt: skip


class PlainProcess(Containment):
    name, isolated = "process", False

    def command(self, worker: Path, folder: Path, hidden: list[Path], data: Path | None) -> list[str]:
        return [sys.executable, "-I", str(worker)]

    def line(self) -> str:
        return ("in a worker process without bubblewrap (not installed, or it cannot run here): resource limits "
                f"only{self.bound.line()}; the network and whatever this user can read were reachable")  # fmt: skip


@functools.cache
def choose() -> Containment:
    """Bubblewrap where it is installed and can make its namespaces here, else a plain process."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None:
        probe = [bwrap, *_BWRAP_BASE, "--uid", "65534", "--gid", "65534", "true"]
        if subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0:
            return Bubblewrap()
    return PlainProcess()


def mnist_copies() -> list[Path]:
    """The MNIST folders the grader knows of, which no worker may read: mnist_lab's embedded copy (a checkout's
    data/mnist, an installed wheel's mnist_lab/embedded_mnist) and $MNIST_LAB_DATA's. With the test labels, a
    notebook could answer the test set, or undo a relabelling, without training."""
    from mnist_lab import data

    found = [data.EMBEDDED_DATA, data.INSTALLED_DATA, Path(os.environ.get(data.DATA_ENV) or data.EMBEDDED_DATA)]
    return [Path(os.path.realpath(copy)) for copy in dict.fromkeys(found) if copy.is_dir()]


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
