"""A notebook's functions and networks as the tests see them, each answer fetched from its worker as plain data.

`RemoteFunction` calls a contract name in the worker; what it returns arrives as arrays, tensors rebuilt here
from arrays, numbers and strings, or a `RemoteNet` for a network. An exception in the student's code comes
back as its type's name, its message and where in the notebook it was raised, and is raised here as an
exception of that name (`StudentCodeError`s carry `student_location`); any other failure of the call
(exit(), a flood, a worker that died or hung, a value grading cannot read) is a `CallError`, one line that
names the call, which the harness makes the test's failure. A `RemoteNet` is an nn.Module whose every
answer (print, children, parameters, forward) is asked of the worker; `trusted_twin()` gives the spec's
own LeNet with its weights, where the two compute the same function.
"""

from __future__ import annotations

import builtins
import functools
import sys
from typing import Any

import torch
from torch import nn

from spec.sandbox import wire
from spec.sandbox.client import Worker
from spec.sandbox.errors import CallError, StudentCodeError, WorkerError
from spec.sandbox.reference import PrintedLeNet, Recorder, load_arrays

PROBE = 64  # images on which a network and its trusted twin must agree


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
    """A reply that holds a value; CallError, or the student's exception, for any other."""
    if "error" in reply:
        raise rebuilt(reply["error"])
    if "exit" in reply:
        where = reply.get("where")
        raise CallError(f"{name} called exit() or sys.exit({reply['exit']}){' at ' + where if where else ''}: "
                         "a graded function must return")  # fmt: skip
    if "not_plain" in reply:
        raise CallError(f"{name} {reply['not_plain']}")
    return reply


def _ask(worker: Worker, name: str, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        reply = worker.request(message, timeout)
    except WorkerError as failure:
        raise CallError(f"{name} {failure}") from None
    return _answer(name, reply)


class RemoteFunction:
    """A contract name the notebook defines, called in its worker."""

    def __init__(self, worker: Worker, name: str, timeout: float = 3600) -> None:
        self.worker, self.name, self.timeout = worker, name, timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The student's function called with these arguments, and nothing else: what it returned."""
        return self._call(args, kwargs, epoch_states=False)[0]

    def with_epoch_states(self, *args: Any, **kwargs: Any) -> tuple[Any, list[dict[str, torch.Tensor]]]:
        """The same call, and the weights of the network among `args` at the end of each epoch but the last
        (reference.at_each_epoch_end), taken by the worker beside the student's code."""
        return self._call(args, kwargs, epoch_states=True)

    def _call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], epoch_states: bool
    ) -> tuple[Any, list[dict[str, torch.Tensor]]]:
        encode = functools.partial(_argument, self.worker)
        request = {"op": wire.CALL, "name": self.name, "args": [encode(a) for a in args],
                   "kwargs": {k: encode(v) for k, v in kwargs.items()}, "epoch_states": epoch_states}  # fmt: skip
        reply = _ask(self.worker, self.name, request, self.timeout)
        for which in ("stdout", "stderr"):
            if reply[f"{which}_total"] > wire.OUTPUT_LIMIT:
                raise CallError(f"{self.name} flooded {which}: {reply[f'{which}_total']:,} characters, more than "
                                 f"the {wire.OUTPUT_LIMIT:,} allowed")  # fmt: skip
        sys.stdout.write(reply["stdout"])
        recorders = [a for a in args if isinstance(a, Recorder)]
        for recorder, recorded in zip(recorders, reply["recorders"], strict=True):
            load_arrays(recorder.net, recorded["state"])
            recorder.batches, recorder.losses = recorded["batches"], recorded["losses"]
        states = [{k: torch.from_numpy(v) for k, v in state.items()} for state in reply["epoch_states"]]
        return _value(self.worker, self.name, reply["value"]), states


def _argument(worker: Worker, value: Any) -> Any:
    """A request's argument: a network by its handle, the spec's Recorder by its state, a tensor by value or file."""
    if isinstance(value, RemoteNet):
        return {wire.NET: value.handle()}
    if isinstance(value, Recorder):
        state = {k: v.detach().cpu().numpy() for k, v in value.net.state_dict().items()}
        device = next(value.parameters()).device.type
        return {wire.RECORDER: {"state": state, "labels": worker.tensor(value.labels), "device": device}}
    if isinstance(value, torch.Tensor):
        return worker.tensor(value)
    if isinstance(value, nn.Module):
        raise TypeError(f"cannot hand a {type(value).__name__} to the sandboxed worker")
    if isinstance(value, tuple):
        return {wire.TUPLE: [_argument(worker, v) for v in value]}
    if isinstance(value, list):
        return [_argument(worker, v) for v in value]
    return value


def _value(worker: Worker, name: str, value: Any) -> Any:
    """A value the worker sent back, as the tests see it: arrays as they came, tensors rebuilt here."""
    if isinstance(value, list):
        return [_value(worker, name, v) for v in value]
    if not isinstance(value, dict):
        return value
    if wire.NDARRAY in value:
        return value[wire.NDARRAY]
    if wire.GENERIC in value:
        return value[wire.GENERIC][()]
    if wire.TENSOR in value:
        return torch.from_numpy(value[wire.TENSOR]).to(value["device"])
    if wire.NET in value:
        return RemoteNet(worker, value[wire.NET], value["kind"])
    if wire.TUPLE in value:
        return tuple(_value(worker, name, v) for v in value[wire.TUPLE])
    raise CallError(f"{name} returned what grading cannot read: {sorted(value)}")


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
            raise CallError(f"this {self._kind} was made by a worker that has since been stopped")
        return self._handle

    def ask(self, method: str, *args: Any, timeout: float = 600) -> Any:
        encode = functools.partial(_argument, self._worker)
        request = {"op": wire.NET_OP, "id": self.handle(), "method": method, "args": [encode(a) for a in args]}
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
