"""The spec's own networks, which tests hand to a student's code (the printed LeNet and a recording one),
and the looks inside a student's network and loop that grading takes.

This file imports nothing but torch and NumPy: the sandboxed worker builds these too (spec/sandbox/worker.py), from
the state the grader sends, and sends back what they recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MARK = 1024  # the corner pixel of image i is -1 + i / MARK: exact in float32, and still near the background


class PrintedLeNet(nn.Module):
    """Cell [37]'s LeNet, as printed: the spec's reference net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(256, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), (2, 2))
        x = x.view(-1, 256)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Recorder(nn.Module):
    """The printed LeNet, recording each training minibatch it sees: its images (by the index their
    corner pixel encodes, see MARK) and its loss."""

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        self.net = PrintedLeNet()
        self.labels = labels
        self.batches: list[list[int]] = []
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if torch.is_grad_enabled():  # a training step, not an evaluation
            index = ((x[:, 0, 0, 0].detach().double() + 1) * MARK).round().long()
            self.batches.append(index.tolist())
            self.losses.append(F.cross_entropy(out.detach().float(), self.labels[index.to(self.labels.device)]).item())
        return out


def feature_maps(net: nn.Module, images: torch.Tensor) -> tuple[dict[str, int], dict[str, list[int]], torch.Tensor]:
    """Q25: how many Conv2d and Linear layers `net` has, the shapes its forward pass makes where the
    documented LeNet has its feature maps (conv1's output, conv2's input and output, the first Linear's
    input, seen by hooks on the first two convolutions and the first linear layer), and its output."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    seen: dict[str, list[int]] = {}
    hooks = []
    if len(convs) == 2 and linears:
        conv1, conv2, fc1 = convs[0], convs[1], linears[0]
        hooks = [
            conv1.register_forward_hook(lambda m, i, o: seen.__setitem__("conv1", list(o.shape))),
            conv2.register_forward_pre_hook(lambda m, i: seen.__setitem__("pool1", list(i[0].shape))),
            conv2.register_forward_hook(lambda m, i, o: seen.__setitem__("conv2", list(o.shape))),
            fc1.register_forward_pre_hook(lambda m, i: seen.__setitem__("flat", list(i[0].shape))),
        ]
    try:
        with torch.no_grad():
            out = net(images)
    finally:
        for hook in hooks:
            hook.remove()
    return {"convs": len(convs), "linears": len(linears)}, seen, out


@contextlib.contextmanager
def at_each_epoch_end(take: Callable[[], Any]) -> Iterator[None]:
    """Call `take()` each time np.random.permutation is drawn after the first: at the end of each epoch but
    the last, for a loop that draws one permutation an epoch, as the printed one does. It draws nothing."""
    draw = np.random.permutation
    calls = 0

    def permutation(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if calls:
            take()
        calls += 1
        return draw(*args, **kwargs)

    np.random.permutation = permutation
    try:
        yield
    finally:
        np.random.permutation = draw


def load_arrays(net: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Weights that crossed the wire as arrays, into `net` where its own tensors are (either side's)."""
    net.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
