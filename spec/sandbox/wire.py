"""The messages between the grader and its sandboxed worker: plain data only, nothing that can carry code.

A message is a JSON header and the arrays it refers to. In the JSON an array stands as {"__array__": i},
the i-th array after the header, which the header describes by its dtype's name and its shape; the
array's raw bytes follow. Only numbers travel this way (bool, integer and float dtypes, nothing with
objects or fields), so nothing is ever unpickled. Everything is read with a limit: a message larger
than `limit` bytes is an error, never a reason to keep reading.

This file imports nothing but the standard library and NumPy: the worker runs it too (spec/sandbox/worker.py),
where the spec itself cannot be imported.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

import numpy as np

LIMIT = 1 << 30  # bytes one message may hold: 60,000 MNIST images in float32 are 188 MB
PLAIN_DTYPES = frozenset("biuf")  # bool, signed and unsigned integers, floats: what an array may hold
OUTPUT_LIMIT = 1_000_000  # characters a graded call may print, stdout and stderr each; past it the call fails

# The conversation. The worker first sends READY. Then each request is answered by one reply:
#   {"op": "define", "file", "cells": [{"filename", "source", "label", "script"}], "statements": [...]}
#       -> {"failed": [{"position", "type", "message"}], "names": [...]}
#   {"op": "call", "name", "args", "kwargs", "epoch_states": bool, "rng"}
#       -> {"value", "stdout", "stdout_total", "stderr_total", "epoch_states": [state, ...], "recorders"}
#   {"op": "net", "id", "method", "args", "rng"} -> {"value"}
# and any request may be answered instead by {"error": {"type", "module", "message", "where", "name"}} (the
# student's exception), {"exit": code, "where"} (exit() in graded code) or {"not_plain": why}.
READY = {"ready": True}
DEFINE, CALL, NET_OP = "define", "call", "net"
# Values in requests and replies: a dict with one of these keys stands for what it names.
TENSOR = "__tensor__"  # {TENSOR: array, "device", "requires_grad"}: a torch.Tensor, rebuilt on the other side
FILE = "__file__"  # {FILE: path of a .npy, "device", "requires_grad"}: a large tensor, mapped from its file
NDARRAY = "__ndarray__"  # a NumPy array a call returned, as it is
GENERIC = "__generic__"  # a NumPy scalar a call returned, as a 0-d array
NET = "__net__"  # {NET: handle, "kind"}: a network that stays in the worker, asked about by its handle
TUPLE = "__tuple__"  # {TUPLE: [items]}: a tuple, which JSON would make a list
RECORDER = "__recorder__"  # the spec's Recorder (spec/sandbox/reference.py), by its state and labels


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
    body = encode(message, arrays)
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = json.dumps({"message": body, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}).encode()
    stream.write(struct.pack(">Q", len(header)) + header)
    for array in arrays:
        stream.write(memoryview(array).cast("B"))  # the array's own bytes: no copy on the way out
    stream.flush()


def _fill(stream: BinaryIO, buffer: memoryview) -> None:
    """Read exactly len(buffer) bytes into it."""
    done = 0
    while done < len(buffer):
        got = stream.readinto(buffer[done:])
        if not got:
            raise WireError(f"the message ends after {done} of {len(buffer)} bytes")
        done += got


def receive(stream: BinaryIO, limit: int = LIMIT) -> dict[str, Any]:
    """One message; a WireError, with what was wrong in one line, for anything else."""
    head = bytearray(8)
    first = stream.readinto(head)
    if not first:
        raise EOFError("the stream ended")
    _fill(stream, memoryview(head)[first:])
    (size,) = struct.unpack(">Q", head)
    if size > limit:
        raise WireError(f"a message header of {size:,} bytes, over the limit of {limit:,}")
    header = bytearray(size)
    _fill(stream, memoryview(header))
    try:
        parsed = json.loads(header)
        body, layouts = parsed["message"], parsed["arrays"]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as err:
        raise WireError(f"a header that is not one: {err}") from None
    total, arrays = size, []
    for layout in layouts:
        dtype, shape = _layout(layout)
        total += dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if total > limit:
            raise WireError(f"a message of more than {limit:,} bytes")
        data = bytearray(dtype.itemsize * int(np.prod(shape, dtype=np.int64)))
        _fill(stream, memoryview(data))
        arrays.append(np.frombuffer(data, dtype=dtype).reshape(shape))  # writable: it owns its bytearray
    if not isinstance(body, dict):
        raise WireError(f"a message that is a {type(body).__name__}, not an object")
    return decode(body, arrays)


def _layout(layout: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """An array's dtype and shape as the header gives them: numbers only, a dtype NumPy names as sent."""
    try:
        name, shape = layout
        dtype = np.dtype(name)
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as err:
        raise WireError(f"an array described as {layout!r}: {err}") from None
    if dtype.str != name or dtype.kind not in PLAIN_DTYPES or any(n < 0 for n in shape):
        raise WireError(f"an array of {name!r} {list(shape)}, not of numbers")
    return dtype, shape
