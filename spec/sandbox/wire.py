"""The messages between the grader and its sandboxed worker: plain data only, nothing that can carry code.

A message is a JSON header and the arrays it refers to. In the JSON an array stands as {"__array__": i},
the i-th array after the header; every array travels in NumPy's .npy format, written and read with
allow_pickle=False, so an object array is refused rather than unpickled. Everything is read with a limit:
a message larger than `limit` bytes is an error, never a reason to keep reading.

This file imports nothing but the standard library and NumPy: the worker runs it too (spec/sandbox/worker.py),
where the spec itself cannot be imported.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any, BinaryIO

import numpy as np

LIMIT = 1 << 30  # bytes one message may hold: 60,000 MNIST images in float32 are 188 MB
PLAIN_DTYPES = frozenset("biuf")  # bool, signed and unsigned integers, floats: what an array may hold


class WireError(Exception):
    """A message that is not one: cut short, too large, malformed, or holding what is not plain data."""


def encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """`value` as JSON-able data, its arrays appended to `arrays`."""
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"__array__": len(arrays) - 1}
    if isinstance(value, dict):
        return {str(k): encode(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v, arrays) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise WireError(f"cannot send a {type(value).__name__}: only arrays, numbers, strings, lists and dicts travel")


def decode(value: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            index = value["__array__"]
            if not isinstance(index, int) or not 0 <= index < len(arrays):
                raise WireError(f"a reference to array {index!r}, of {len(arrays)}")
            return arrays[index]
        return {k: decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    return value


def send(stream: BinaryIO, message: dict[str, Any]) -> None:
    arrays: list[np.ndarray] = []
    header = json.dumps(encode(message, arrays), allow_nan=True).encode()
    blobs = []
    for array in arrays:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
        blobs.append(buffer.getvalue())
    stream.write(struct.pack(">QI", len(header), len(blobs)) + header)
    for blob in blobs:
        stream.write(struct.pack(">Q", len(blob)))
        stream.write(blob)
    stream.flush()


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise WireError(f"the message ends after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def receive(stream: BinaryIO, limit: int = LIMIT) -> dict[str, Any]:
    """One message; a WireError, with what was wrong in one line, for anything else."""
    head = stream.read(12)
    if not head:
        raise EOFError("the stream ended")
    if len(head) < 12:
        head += _exactly(stream, 12 - len(head))
    size, count = struct.unpack(">QI", head)
    total = size
    if total > limit:
        raise WireError(f"a message header of {size:,} bytes, over the limit of {limit:,}")
    try:
        message = json.loads(_exactly(stream, size))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"a header that is not JSON: {err}") from None
    arrays = []
    for _ in range(count):
        (length,) = struct.unpack(">Q", _exactly(stream, 8))
        total += length
        if total > limit:
            raise WireError(f"a message of more than {limit:,} bytes")
        arrays.append(_array(_exactly(stream, length)))
    if not isinstance(message, dict):
        raise WireError(f"a message that is a {type(message).__name__}, not an object")
    return decode(message, arrays)


def _array(blob: bytes) -> np.ndarray:
    try:
        array = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError) as err:
        raise WireError(f"an array that does not read: {err}") from None
    if array.dtype.kind not in PLAIN_DTYPES:
        raise WireError(f"an array of {array.dtype}, not of numbers")
    return array.copy()  # its own writable memory, not a view of the message
