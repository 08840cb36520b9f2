"""A strict reader of the IDX format that MNIST ships in.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number
of dimensions), one big-endian uint32 per dimension, then the data in C order.
Nothing in the header is trusted until it is checked against the file.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import DataError

# dtype code -> big-endian numpy dtype, as the format defines them.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CHUNK = 1 << 22
# numpy's limit on dimensions (64 from numpy 2, 32 before); the format allows 255.
MAX_NDIM = 32
# Deflate expands at most 1032 times: a .gz file of n bytes holds at most this many times n.
_DEFLATE_MAX_RATIO = 1032


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Read up to `n` bytes in chunks, so a header that lies about its size
    costs no more memory than the file really holds."""
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def parse_idx(stream: BinaryIO, name: str, sha256: str | None = None, max_bytes: int | None = None) -> np.ndarray:
    """Parse one IDX stream; `name` is used in error messages.

    With `sha256`, the whole decompressed content must have that digest. With
    `max_bytes`, the most the stream can hold, a header that promises more fails
    before any data is read. A gzip stream's errors become `DataError` too.
    """
    try:
        return _parse(stream, name, sha256, max_bytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{name}: corrupt or truncated gzip data ({err})") from None


def _parse(stream: BinaryIO, name: str, sha256: str | None, max_bytes: int | None) -> np.ndarray:
    magic = _read_exactly(stream, 4)
    if len(magic) < 4:
        raise DataError(f"{name}: truncated: {len(magic)} bytes, too short for an IDX header")
    if magic[:2] != b"\0\0":
        raise DataError(f"{name}: not an IDX file: magic number {magic.hex()} does not start with 0000")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions")
    if ndim > MAX_NDIM:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions, more than the {MAX_NDIM} this reader takes")
    dims_raw = _read_exactly(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{name}: truncated: header declares {ndim} dimensions but ends early")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    dtype = IDX_DTYPES[code]
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:  # numpy refuses even empty ones
        raise DataError(f"{name}: IDX header {shape} describes an array too large for numpy")
    expected = math.prod(shape) * dtype.itemsize
    if max_bytes is not None and 4 + 4 * ndim + expected > max_bytes:
        raise DataError(
            f"{name}: truncated: header {shape} promises {expected} data bytes, more than the file can hold"
        )
    data = _read_exactly(stream, expected)
    if len(data) < expected:
        raise DataError(f"{name}: truncated: header {shape} promises {expected} data bytes, file has {len(data)}")
    if stream.read(1):
        raise DataError(f"{name}: trailing bytes after the {expected} data bytes that header {shape} promises")
    if sha256 is not None:
        digest = hashlib.sha256(magic + dims_raw)
        digest.update(data)
        if digest.hexdigest() != sha256.lower():
            raise DataError(f"{name}: SHA-256 {digest.hexdigest()} does not match the expected {sha256}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def read_idx(path: str | Path, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed (`.gz`) or raw, as a read-only array.

    With `sha256`, its decompressed content must have that digest.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            info = os.fstat(raw.fileno())
            size = info.st_size if stat.S_ISREG(info.st_mode) else None  # a pipe's size says nothing
            if path.suffix != ".gz":
                return parse_idx(raw, str(path), sha256, max_bytes=size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                bound = None if size is None else size * _DEFLATE_MAX_RATIO
                return parse_idx(stream, str(path), sha256, max_bytes=bound)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
