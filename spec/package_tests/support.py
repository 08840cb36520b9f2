"""Helpers for the package's own tests: small IDX files, synthetic MNIST folders, a code-running pickle.

Everything here writes only where it is told to (a test's tmp_path), never into the repository.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_lab.data import EMBEDDED_DATA, FILES

REPO = Path(__file__).resolve().parents[2]


class StopTraining(Exception):  # noqa: N818 (a signal, not an error)
    """Raised from train()'s on_log or on_epoch to stop a run early; the caller suppresses it."""


REAL_DATA = EMBEDDED_DATA

# The format's dtype codes, written out here rather than taken from the package under test.
IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
IDX_DTYPES = {code: np.dtype(">" + kind) for kind, code in IDX_CODES.items()}


def idx_header(code: int, shape: tuple[int, ...]) -> bytes:
    """Magic number (0, 0, dtype code, number of dimensions) and one big-endian uint32 per dimension."""
    return struct.pack(">HBB", 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` as a complete IDX file's content."""
    array = np.asarray(array)
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    return idx_header(IDX_CODES[kind], array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, content: bytes) -> Path:
    """Write `content`, gzip-compressed where the name ends in .gz."""
    path.write_bytes(gzip.compress(content, mtime=0) if path.suffix == ".gz" else content)
    return path


def declared(content: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """What an IDX header says: dtype, shape and header length. Only for content that parsed."""
    code, ndim = content[2], content[3]
    shape = struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    return IDX_DTYPES[code], shape, 4 + 4 * ndim


def make_mnist(
    folder: Path, n_train: int = 200, n_test: int = 100, *, seed: int = 0, gz: bool = True, sums: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small but valid MNIST folder: random 28x28 digits, labels 0-9, SHA256SUMS of the decompressed files.

    Returns each split's (images (N, 28, 28) uint8, labels (N,) uint8) as written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lines = []
    for split, n in (("training", n_train), ("testing", n_test)):
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        written[split] = images, labels
        for name, array in zip(FILES[split], (images, labels), strict=True):
            content = idx_bytes(array)
            write_file(folder / (f"{name}.gz" if gz else name), content)
            lines.append(f"{hashlib.sha256(content).hexdigest()}  {name}")
    if sums:
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return written


@functools.cache
def real_head(name: str, count: int) -> bytes:
    """The header and first `count` items of a real MNIST file, its count field set to `count`:
    a small valid IDX file with MNIST's own header. Decompresses only what it needs."""
    with gzip.open(REAL_DATA / f"{name}.gz", "rb") as stream:
        ndim = stream.read(4)[3]
        dims = struct.unpack(f">{ndim}I", stream.read(4 * ndim))
        item = int(np.prod(dims[1:], dtype=np.int64))
        body = stream.read(count * item)
    return idx_header(0x08, (count, *dims[1:])) + body


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Measure the peak Python and numpy allocation inside the block, in bytes: `with peak_memory() as peak:`,
    then `peak[0]`."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result: list[int] = []
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1] - base)
        if not was_tracing:
            tracemalloc.stop()


class CodeRunningPickle:
    """Pickles to "call exec(...) on load": unpickling it creates `marker`, proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def assert_same_weights(got: nn.Module, want: nn.Module, what: str) -> None:
    """Two nets trained two ways hold the same weights, to the float rounding that parts runs of
    the same arithmetic (rtol 1e-4, atol 5e-5); `what` says which runs, for the message."""
    for (name, a), b in zip(got.named_parameters(), want.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5, msg=lambda m, name=name: f"{what}: {name} differs: {m}")
