"""The sandboxed worker: the one process that runs a student's code, and answers the grader in plain data.

    python -I spec/sandbox/worker.py      (started by spec/sandbox/client.py, never by hand)

Requests come on standard input and replies go out on the pipe $MNIST_LAB_REPLY_FD names, both as spec/sandbox/wire.py
messages; the process's own stdout and stderr go to a file in its working folder, so that nothing the
student's code writes can pass for a reply. The worker builds the notebook's definitions (`define`),
then calls the contract's functions (`call`) and looks at the networks they return (`net`). Every
request carries the grader's random generators' states, so that a call draws what it would have drawn
in the grader's process. What comes back is numbers, strings and arrays: a returned value that is not
plain data (a Tensor or ndarray subclass, an object with its own comparisons) is refused here with one
line, and the grader checks what it can against its own computation.

This file imports nothing of the spec: `wire` and `reference` beside it are imported as top-level modules.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.abc
import io
import linecache
import os
import random
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # wire and reference, beside this file

import numpy as np
import reference
import torch
import wire
from torch import nn

WHERE = "where.txt"  # where the student's code runs now (StudentCode.watch)
WATCH_SECONDS = 0.5  # how stale the place named for a stopped call may be
HIDDEN = ("spec", "mnist_lab")  # packages graded code may not import: the spec and the reference package
SCALARS = (bool, int, float, str)
NUMPY_SCALARS = (np.bool_, np.integer, np.floating)


class NotPlainError(Exception):
    """A value that cannot travel back as plain data."""


class _Hidden(importlib.abc.MetaPathFinder):
    """Refuses the spec and the reference package: a graded name must be the notebook's own."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in HIDDEN:
            raise ImportError(f"No module named {name!r} (graded code runs apart from the spec and mnist_lab)")


class _Bounded(io.TextIOBase):
    """Keeps what is written up to `limit` characters, and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left, self.total = limit, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.total += len(text)
        if self.left > 0:
            self.parts.append(text[: self.left])
            self.left -= len(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _course_tools() -> types.ModuleType:
    """MNISTtools inside the worker: graded functions get their data passed in, and no test labels."""
    module = types.ModuleType("MNISTtools", "The course's tools, as a graded function may see them.")

    def load(dataset: str = "training", path: str | None = None) -> Any:
        raise RuntimeError("MNISTtools.load is not available inside a graded function: grading passes the data in")

    module.load = load
    module.show = lambda image, *args, **kwargs: None
    return module


class StudentCode:
    """The notebook's definitions as this worker holds them: its module, its cells, the networks it made."""

    def __init__(self) -> None:
        self.module = types.ModuleType("graded_notebook")
        self.cells: dict[str, tuple[str, bool]] = {}  # filename -> (label, script)
        self.nets: dict[int, nn.Module] = {}

    # --- the notebook -------------------------------------------------------------------------------

    def define(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run the planned statements, in notebook order; report those that raised."""
        sys.modules["MNISTtools"] = _course_tools()
        sys.modules["graded_notebook"] = self.module
        self.module.__file__ = request["file"]
        trees = {}
        for cell in request["cells"]:
            source = cell["source"]
            linecache.cache[cell["filename"]] = (len(source), None, source.splitlines(True), cell["filename"])
            self.cells[cell["filename"]] = (cell["label"], cell["script"])
            trees[cell["filename"]] = ast.parse(source, filename=cell["filename"])
        failed = []
        for position, statement in enumerate(request["statements"]):
            node = trees[statement["filename"]].body[statement["index"]]
            code = compile(ast.Module(body=[node], type_ignores=[]), statement["filename"], "exec")
            try:
                with _captured():
                    exec(code, self.module.__dict__)
            except (Exception, SystemExit) as err:
                failed.append({"position": position, "type": type(err).__name__, "message": _one_line(err)})
        names = sorted(name for name in self.module.__dict__ if isinstance(name, str))
        return {"failed": failed, "names": names}

    def where(self, tb: types.TracebackType | None) -> str | None:
        """Where a traceback last leaves the student's code: 'cell 14 (In [41]), line 12, in backprop_deep'."""
        found = None
        while tb is not None:
            found = self.place(tb.tb_frame.f_code, tb.tb_lineno) or found
            tb = tb.tb_next
        return found

    def place(self, code: types.CodeType, line: int) -> str | None:
        if code.co_filename not in self.cells:
            return None
        label, script = self.cells[code.co_filename]
        return f"{'' if script else label + ', '}line {line}, in {code.co_name}"

    def watch(self, thread: int, path: Path) -> None:
        """Keep in `path` where the student's code is running now, in the main thread: the grader reads it
        when it stops a call that ran past its time limit."""
        written = None
        while True:
            time.sleep(WATCH_SECONDS)
            frame, found = sys._current_frames().get(thread), None
            while frame is not None and found is None:
                found = self.place(frame.f_code, frame.f_lineno)
                frame = frame.f_back
            if found != written:
                path.write_text(found or "")
                written = found

    # --- calls --------------------------------------------------------------------------------------

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self.module.__dict__[request["name"]]  # the grader asks only for names the module binds
        args = [self.argument(a) for a in request["args"]]
        kwargs = {k: self.argument(v) for k, v in request["kwargs"].items()}
        watched = next((a for a in args if isinstance(a, nn.Module)), None)
        states: list[dict[str, np.ndarray]] = []
        with _captured() as (out, err), _epoch_states(watched if request.get("epoch_states") else None, states):
            result = function(*args, **kwargs)
        reply = {"value": self.returned(result), "stdout": out.text(), "stdout_total": out.total,
                 "stderr_total": err.total, "epoch_states": states}  # fmt: skip
        reply["recorders"] = [_recorded(a) for a in args if isinstance(a, reference.Recorder)]
        return reply

    def argument(self, value: Any) -> Any:
        """A request's argument as the student's code sees it."""
        if isinstance(value, list):
            return [self.argument(v) for v in value]
        if not isinstance(value, dict):
            return value
        if wire.TENSOR in value or wire.FILE in value:
            return _tensor(value)
        if wire.NET in value:
            return self.nets[value[wire.NET]]
        if wire.RECORDER in value:
            spec = value[wire.RECORDER]
            recorder = reference.Recorder(_tensor(spec["labels"]))
            reference.load_arrays(recorder.net, spec["state"])
            return recorder.to(spec["device"])
        if wire.TUPLE in value:
            return tuple(self.argument(v) for v in value[wire.TUPLE])
        return {k: self.argument(v) for k, v in value.items()}

    def returned(self, value: Any) -> Any:
        """What a call returned, as plain data; a network becomes a handle the grader can ask about."""
        kind = type(value)
        if value is None or kind in SCALARS:
            return value
        if kind is np.ndarray:
            if value.dtype.kind not in wire.PLAIN_DTYPES:
                raise NotPlainError(f"returned an array of {value.dtype}, not of numbers")
            return {wire.NDARRAY: value}
        if isinstance(value, NUMPY_SCALARS) and kind.__module__ == "numpy":
            return {wire.GENERIC: np.asarray(value)}
        if kind is torch.Tensor:
            return _scores(value)
        if isinstance(value, nn.Module):
            handle = len(self.nets) + 1
            self.nets[handle] = value
            return {wire.NET: handle, "kind": type(value).__name__}
        if kind in (list, tuple):
            items = [self.returned(v) for v in value]
            return items if kind is list else {wire.TUPLE: items}
        raise NotPlainError(f"returned a {kind.__module__}.{kind.__qualname__}, which is not plain data")

    # --- networks -----------------------------------------------------------------------------------

    def net(self, request: dict[str, Any]) -> dict[str, Any]:
        net = self.nets[request["id"]]
        method = NET_OPS[request["method"]]  # each answers with plain parts only
        return {"value": method(net, *[self.argument(a) for a in request.get("args", [])])}


def _tensor(value: dict[str, Any]) -> torch.Tensor:
    # A file is the data set, mapped: copy-on-write, so that the graded code may change its own copy.
    file = value.get(wire.FILE)
    array = value[wire.TENSOR] if file is None else np.load(file, mmap_mode="c", allow_pickle=False)
    return torch.from_numpy(array).to(value["device"]).requires_grad_(value["requires_grad"])


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _state(net: nn.Module) -> dict[str, np.ndarray]:
    return {name: _array(t) for name, t in net.state_dict().items()}


def _recorded(recorder: reference.Recorder) -> dict[str, Any]:
    return {"state": _state(recorder.net), "batches": recorder.batches, "losses": recorder.losses}


def _scores(out: Any) -> dict[str, Any]:
    """A tensor as a tagged value; anything but a plain Tensor is refused (a forward pass may return one)."""
    if type(out) is not torch.Tensor:
        raise NotPlainError(f"forward returned a {type(out).__module__}.{type(out).__qualname__}, not a Tensor")
    return {wire.TENSOR: out.detach().cpu().numpy(), "device": out.device.type}


def _forward(net: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    with torch.no_grad():
        return _scores(net(images))


def _feature_maps(net: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    layers, seen, out = reference.feature_maps(net, images)
    return {"layers": layers, "seen": seen, "out": _scores(out)}


def _moved(net: nn.Module, device: str) -> None:
    net.to(device)  # the handle's answer is nothing, not the module


NET_OPS: dict[str, Callable[..., Any]] = {
    "repr": repr,
    "children": lambda net: [[name, type(m).__name__, repr(m)] for name, m in net.named_children()],
    "parameters": lambda net: [[n, _array(p), bool(p.requires_grad)] for n, p in net.named_parameters()],
    "state": _state,
    "load": reference.load_arrays,
    "to": _moved,
    "forward": _forward,
    "feature_maps": _feature_maps,
}


@contextlib.contextmanager
def _captured() -> Iterator[tuple[_Bounded, _Bounded]]:
    out, err = _Bounded(wire.OUTPUT_LIMIT), _Bounded(wire.OUTPUT_LIMIT)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def _epoch_states(net: nn.Module | None, states: list[dict[str, np.ndarray]]) -> Any:
    """The net's weights at the end of each epoch but the last (reference.at_each_epoch_end); nothing for None."""
    if net is None:
        return contextlib.nullcontext()
    return reference.at_each_epoch_end(lambda: states.append(_state(net)))


def _set_generators(states: dict[str, Any]) -> None:
    """The grader's generators' states, so that the student's code draws what it would have drawn there."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys, pos, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(states["torch"]))
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.from_numpy(states["cuda"]))


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def _failure(code: StudentCode, err: BaseException) -> dict[str, Any]:
    """A raised exception as plain data: its type's name and module, its message, where in the student's code."""
    kind = type(err)
    where = code.where(err.__traceback__)
    if isinstance(err, SystemExit):
        return {"exit": repr(err.code), "where": where}
    if isinstance(err, NotPlainError):
        return {"not_plain": str(err)}
    name = getattr(err, "name", None)
    return {"error": {"type": kind.__qualname__, "module": kind.__module__, "message": str(err), "where": where,
                      "name": name if isinstance(name, str) else None}}  # fmt: skip


def serve(requests: Any, replies: Any) -> None:
    code = StudentCode()
    watcher = threading.Thread(target=code.watch, args=(threading.get_ident(), Path(WHERE)), daemon=True)
    watcher.start()
    handlers = {wire.DEFINE: code.define, wire.CALL: code.call, wire.NET_OP: code.net}
    while True:
        try:
            request = wire.receive(requests)
        except EOFError:
            return
        if "rng" in request:
            _set_generators(request["rng"])
        try:
            reply = handlers[request["op"]](request)
        except (Exception, SystemExit) as err:
            reply = _failure(code, err)
        try:
            wire.send(replies, reply)
        except wire.WireError as err:  # a value that encode() cannot take: say so, not crash
            wire.send(replies, {"not_plain": str(err)})


def main() -> None:
    replies = os.fdopen(int(os.environ.pop("MNIST_LAB_REPLY_FD")), "wb")
    requests = os.fdopen(0, "rb")
    wire.send(replies, wire.READY)  # before any student code: until this, a failure is the grader's
    # The process's own output goes to a file here: what graded code writes to fd 1 or 2 cannot pass for a reply.
    log = os.open("worker-output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.meta_path.insert(0, _Hidden())
    for name in [m for m in sys.modules if m.split(".")[0] in HIDDEN]:
        del sys.modules[name]
    try:
        serve(requests, replies)
    except BaseException:  # the grader reads the log when the worker dies
        traceback.print_exc()
        raise


if __name__ == "__main__":
    main()
