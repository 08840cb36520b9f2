"""A notebook's functions and networks as the tests see them, each answer fetched from its worker as plain data.

`RemoteFunction` calls a contract name in the worker; what it returns arrives as arrays, tensors rebuilt here
from arrays, numbers and strings, or a `RemoteNet` for a network. An exception in the student's code comes
back as its type's name, its message and where in the notebook it was raised, and is raised here as an
exception of that name (`StudentError`s carry `student_location`). A `RemoteNet` is an nn.Module whose
every answer (print, children, parameters, forward) is asked of the worker; `trusted_twin()` gives the
spec's own LeNet with its weights, where the two compute the same function.
"""

from __future__ import annotations

import builtins
import functools
import sys
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from spec.sandbox.client import Worker, WorkerError
from spec.sandbox.reference import PrintedLeNet, Recorder

OUTPUT_LIMIT = 1_000_000  # characters a graded call may print, stdout and stderr each (as the worker counts)
PROBE = 64  # images on which a network and its trusted twin must agree


class StudentCodeError(Exception):
    """What the student's code raised, rebuilt under its own name (for grading's messages)."""

    student_location: str | None = None


@functools.cache
def _error_class(name: str, module: str) -> type[Exception]:
    base = getattr(builtins, name, None) if module == "builtins" else None
    bases = (base, StudentCodeError) if isinstance(base, type) and issubclass(base, Exception) else (StudentCodeError,)
    try:
        return type(name, bases, {"__module__": module, "__str__": lambda self: self.args[0]})
    except TypeError:  # a builtin that cannot be a base together with another
        return type(name, (StudentCodeError,), {"__module__": module, "__str__": lambda self: self.args[0]})


def rebuilt(error: dict[str, Any]) -> StudentCodeError:
    """The worker's account of an exception, as an exception of the same name and message."""
    err = _error_class(error["type"], error["module"])(error["message"])
    err.student_location = error.get("where")
    if error.get("name") is not None:
        err.name = error["name"]
    return err


def _answer(name: str, reply: dict[str, Any]) -> dict[str, Any]:
    """A reply that holds a value; a failed test, or the student's exception, for any other."""
    if "error" in reply:
        raise rebuilt(reply["error"])
    if "exit" in reply:
        where = reply.get("where")
        pytest.fail(f"{name} called exit() or sys.exit({reply['exit']}){' at ' + where if where else ''}: "
                    "a graded function must return", pytrace=False)  # fmt: skip
    if "not_plain" in reply:
        pytest.fail(f"{name} {reply['not_plain']}", pytrace=False)
    return reply


def _ask(worker: Worker, name: str, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        return _answer(name, worker.request(message, timeout))
    except WorkerError as failure:
        pytest.fail(f"{name} {failure}", pytrace=False)


class RemoteFunction:
    """A contract name the notebook defines, called in its worker."""

    def __init__(self, worker: Worker, name: str, timeout: float = 3600) -> None:
        self.worker, self.name, self.timeout = worker, name, timeout
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def __call__(self, *args: Any, snapshots: bool = False, **kwargs: Any) -> Any:
        encode = functools.partial(_argument, self.worker)
        request = {"op": "call", "name": self.name, "args": [encode(a) for a in args],
                   "kwargs": {k: encode(v) for k, v in kwargs.items()}, "snapshots": snapshots}  # fmt: skip
        reply = _ask(self.worker, self.name, request, self.timeout)
        for which in ("stdout", "stderr"):
            if reply[f"{which}_total"] > OUTPUT_LIMIT:
                pytest.fail(f"{self.name} flooded {which}: {reply[f'{which}_total']:,} characters, more than the "
                            f"{OUTPUT_LIMIT:,} allowed", pytrace=False)  # fmt: skip
        sys.stdout.write(reply["stdout"])
        recorders = [a for a in args if isinstance(a, Recorder)]
        for recorder, recorded in zip(recorders, reply["recorders"], strict=True):
            _load(recorder.net, recorded["state"])
            recorder.batches, recorder.losses = recorded["batches"], recorded["losses"]
        self.snapshots = [{k: torch.from_numpy(v) for k, v in state.items()} for state in reply["snapshots"]]
        return _value(self.worker, self.name, reply["value"])


def _argument(worker: Worker, value: Any) -> Any:
    """A request's argument: a network by its handle, the spec's Recorder by its state, a tensor by value or file."""
    if isinstance(value, RemoteNet):
        return {"__net__": value.handle()}
    if isinstance(value, Recorder):
        state = {k: v.detach().cpu().numpy() for k, v in value.net.state_dict().items()}
        device = next(value.parameters()).device.type
        return {"__recorder__": {"state": state, "labels": worker.tensor(value.labels), "device": device}}
    if isinstance(value, torch.Tensor):
        return worker.tensor(value)
    if isinstance(value, nn.Module):
        raise TypeError(f"cannot hand a {type(value).__name__} to the sandboxed worker")
    if isinstance(value, tuple):
        return {"__tuple__": [_argument(worker, v) for v in value]}
    if isinstance(value, list):
        return [_argument(worker, v) for v in value]
    return value


def _value(worker: Worker, name: str, value: Any) -> Any:
    """A value the worker sent back, as the tests see it: arrays as they came, tensors rebuilt here."""
    if isinstance(value, list):
        return [_value(worker, name, v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return value["__ndarray__"]
    if "__generic__" in value:
        return value["__generic__"][()]
    if "__tensor__" in value:
        return torch.from_numpy(value["__tensor__"]).to(value["device"])
    if "__net__" in value:
        return RemoteNet(worker, value["__net__"], value["kind"])
    if "__tuple__" in value:
        return tuple(_value(worker, name, v) for v in value["__tuple__"])
    raise pytest.fail(f"{name} returned what grading cannot read: {sorted(value)}", pytrace=False)


def _load(net: nn.Module, state: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            tensor.copy_(torch.from_numpy(state[name]))


class RemoteLayer:
    """A child of a RemoteNet: its kind (its class's name) and what it prints."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@functools.cache
def _layer_class(kind: str) -> type[RemoteLayer]:
    return type(kind, (RemoteLayer,), {})  # type(layer).__name__ is the student's layer's


class RemoteNet(nn.Module):
    """The network a notebook's LeNet() made, in its worker; every answer is asked of the worker."""

    def __init__(self, worker: Worker, handle: int, kind: str) -> None:
        super().__init__()
        self._worker, self._handle, self._kind = worker, handle, kind
        self._generation, self._device = worker.generation, torch.device("cpu")

    def handle(self) -> int:
        if self._worker.generation != self._generation:
            pytest.fail(f"this {self._kind} was made by a worker that has since been stopped", pytrace=False)
        return self._handle

    def ask(self, method: str, *args: Any, timeout: float = 600) -> Any:
        encode = functools.partial(_argument, self._worker)
        request = {"op": "net", "id": self.handle(), "method": method, "args": [encode(a) for a in args]}
        return _ask(self._worker, self._kind, request, timeout)["value"]

    def to(self, device: Any, *args: Any, **kwargs: Any) -> RemoteNet:  # type: ignore[override]
        self._device = torch.device(device)
        self.ask("to", self._device.type)
        return self

    def __repr__(self) -> str:
        return self.ask("repr")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            children = dict(self.named_children())
            if name in children:
                return children[name]
            raise

    def named_children(self):  # type: ignore[override]
        for name, kind, text in self.ask("children"):
            yield name, _layer_class(kind)(text)

    def named_parameters(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        for name, values, requires_grad in self.ask("parameters"):
            yield name, torch.from_numpy(values).to(self._device).requires_grad_(requires_grad)

    def parameters(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return (p for _, p in self.named_parameters())

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {name: torch.from_numpy(v).to(self._device) for name, v in self.ask("state").items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.ask("load", {k: v.detach().cpu().numpy() for k, v in state.items()})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _value(self._worker, self._kind, self.ask("forward", images))

    def feature_maps(self, images: torch.Tensor) -> tuple[dict[str, int], dict[str, list[int]], torch.Tensor]:
        answer = self.ask("feature_maps", images)
        return answer["layers"], answer["seen"], _value(self._worker, self._kind, answer["out"])

    def trusted_twin(self, probe: torch.Tensor) -> PrintedLeNet | None:
        """The spec's own LeNet with this network's weights, where it computes what this one does on `probe`
        (to float rounding); None for another architecture."""
        twin = PrintedLeNet().to(self._device)
        state = self.state_dict()
        if {k: tuple(v.shape) for k, v in state.items()} != {k: tuple(v.shape) for k, v in twin.state_dict().items()}:
            return None
        twin.load_state_dict(state)
        images = probe[:PROBE].to(self._device)
        with torch.no_grad():
            same = torch.allclose(twin(images), self(images), rtol=1e-4, atol=1e-4)
        return twin if same else None
