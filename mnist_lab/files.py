"""Writing results and weights safely, and loading weights without running code."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from .errors import DataError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the target folder, then rename it into place:
    an interrupted write never leaves a half-written file or truncates the old one.

    The file gets the old one's permissions, or a new file's (the umask's) where there was none.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would make the results private
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))


def save_weights(net: nn.Module, path: str | os.PathLike) -> None:
    """The state dict, in torch's format, loadable with `weights_only=True`."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_write(path, lambda f: torch.save(state, f))


def load_weights(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights saved by `save_weights` into `net`, refusing files that would
    run code (pickled objects other than tensors) and weights of another shape."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says enough
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: weights file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    except Exception as err:  # torch.load fails in many ways on files it did not write: all mean "no"
        raise DataError(f"{path}: refused: not a weights-only state dict ({_why_refused(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict of tensors")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{path}: parameters missing {missing} or unexpected {unexpected}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise DataError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, LeNet needs {tuple(expected[name].shape)}"
            )
    net.load_state_dict(state)
    return net


def _why_refused(err: Exception) -> str:
    """The one useful phrase of torch's error, without its advice to load the file unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it would call {found.group(1)}; weights are loaded without running code"
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if found:
        return found.group(1).strip().rstrip(".")
    lines = text.strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
