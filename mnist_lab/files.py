"""Writing results and weights safely, and loading weights without running code."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from .errors import DataError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the target folder, then rename it into place:
    an interrupted write never leaves a half-written file or truncates the old one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: weights file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a weights-only state dict, refused ({reason})") from None
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
