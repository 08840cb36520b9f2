"""The notebook's top-level cells, done by the spec itself.

A student writes three functions (`normalize_MNIST_images`, `LeNet`, `backprop_deep`); everything
around them is top-level notebook code that grading does not run: the layout (cells [31]-[32]), the
tensors (cell [35]), the device (cell [21]), the training calls (cells [42], [50]) and the accuracy
(cells [40], [44], [51]). The spec does those steps here, as the printed cells do them, around the
implementation's functions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spec.harness.impl import Implementation
from spec.sandbox import reference
from spec.sandbox.remote import RemoteNet

# What backprop_deep prints every 100 minibatches: print("[%d, %5d] loss: %.3f" % (epoch + 1, k + 1, ...)).
LOG_LINE = re.compile(r"^\[\s*(\d+),\s*(\d+)\]\s+loss:\s+(-?\d+\.\d+|nan|inf)\s*$")


def layout(columns: np.ndarray) -> np.ndarray:
    """Cells [31]-[32]: (784, N) columns -> np.reshape to (28, 28, 1, N) -> np.moveaxis to (N, 1, 28, 28)."""
    stacked = np.reshape(columns, (28, 28, 1, columns.shape[-1]))
    return np.moveaxis(stacked, [0, 1, 2, 3], [2, 3, 1, 0])


def normalize_as_printed(x: np.ndarray) -> np.ndarray:
    """Cell [28], the reference for the questions after Q24: uint8 [0, 255] -> float32 [-1, 1]."""
    return 2 * (x.astype(np.float32) - 255 / 2.0) / 255


def as_tensors(
    columns: np.ndarray, labels: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells [29]-[35] for one split: normalise, lay out, torch.from_numpy. The images are made
    contiguous (same values): the moved axes would make every minibatch a scattered gather."""
    images = np.ascontiguousarray(layout(normalize(columns)))
    return torch.from_numpy(images), torch.from_numpy(labels)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Cells [39]-[40]: `100 * (ltest == lpred).float().mean()` with `_, lpred = net(xtest).max(1)`."""
    _, lpred = net(x.to(device)).max(1)
    return float(100 * (labels.to(device) == lpred).float().mean())



def seed_everything(seed: int) -> None:
    """Seed every generator a notebook draws from: Python's, NumPy's global one and torch's (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_log(text: str) -> list[tuple[int, int, float]]:
    """The `[epoch, k] loss: x.xxx` lines of printed output, in order; other lines are ignored."""
    rows = []
    for line in text.splitlines():
        match = LOG_LINE.match(line.strip())
        if match:
            rows.append((int(match[1]), int(match[2]), float(match[3])))
    return rows


@dataclass(frozen=True)
class PrintedRun:
    """One run of cell [42] (or [50]) and the accuracy cell after it."""

    device: str
    epochs: int
    seed: int
    log: list[tuple[int, int, float]]  # its [epoch, k] loss lines
    accuracy: float  # test accuracy after training, in percent
    # (epoch, test accuracy) after each epoch the spec could see end (see train_as_printed), the last included
    epoch_accuracy: list[tuple[int, float]]
    source: str = "a run of its own"  # or the longer run whose first epochs it is (first_epochs)

    def first_epochs(self, epochs: int) -> PrintedRun | None:
        """This run as it stood after `epochs` epochs, where the spec saw that epoch end; else None. It is
        backprop_deep(T=epochs) only where the loop's first epochs do not depend on T (first_epochs_differ)."""
        if len(self.epoch_accuracy) < epochs or self.epoch_accuracy[epochs - 1][0] != epochs:
            return None
        source = f"the first {epochs} epochs of the {self.epochs}-epoch run"
        log = [row for row in self.log if row[0] <= epochs]
        seen = self.epoch_accuracy[:epochs]
        return PrintedRun(self.device, epochs, self.seed, log, seen[-1][1], seen, source)


def train_as_printed(
    impl: Implementation,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    epochs: int,
    seed: int,
) -> PrintedRun:
    """With `impl`'s LeNet and backprop_deep: `net = LeNet().to(device)`, the data moved with `.to(device)`,
    `backprop_deep(xtrain, ltrain, net, T=epochs)` with its printed defaults (B=100, gamma=.001, rho=.9), then
    the test accuracy: cells [49]-[51].

    Every generator is seeded with `seed` first. The test accuracy is also taken after each epoch where
    the loop draws one np.random.permutation an epoch, as the printed one does, from the weights it had
    when it drew the next epoch's. A sandboxed notebook's accuracy is computed here, by the spec's LeNet
    with its weights where the two compute the same function, else from its scores for the test images.
    """
    seed_everything(seed)
    net = impl.LeNet().to(device)
    xtrain, ltrain = (t.to(device) for t in data["training"])
    xtest, ltest = data["testing"]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        states = impl.backprop_with_epoch_states(xtrain, ltrain, net, epochs)
    final = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # A notebook's net: the spec's LeNet with its weights, else its own scores for the unlabelled test images.
    judge = (net.trusted_twin(xtest) or net) if isinstance(net, RemoteNet) else copy.deepcopy(net)

    def accuracy_of(state: dict[str, torch.Tensor]) -> float:
        load(judge, state)
        return accuracy(judge, xtest, ltest, device)

    per_epoch = [(epoch, accuracy_of(state)) for epoch, state in enumerate(states, 1)]
    per_epoch.append((epochs, accuracy_of(final)))
    return PrintedRun(
        device=device.type,
        epochs=epochs,
        seed=seed,
        log=parse_log(output.getvalue()),
        accuracy=per_epoch[-1][1],
        epoch_accuracy=per_epoch,
    )


PROBE_IMAGES = 300  # training images: 3 minibatches an epoch, sent to a worker by value


def first_epochs_differ(
    impl: Implementation, data: dict[str, tuple[torch.Tensor, torch.Tensor]], device: torch.device, epochs: int,
    seed: int,
) -> str | None:
    """Why the first `epochs` epochs of a longer run of backprop_deep may not stand for T=`epochs`, or None
    where they may: on the first PROBE_IMAGES training images, seeded alike, T=`epochs` ends with the weights
    that T=`epochs`+1 has when it ends epoch `epochs` (seen as train_as_printed sees epochs end)."""
    xtrain, ltrain = (t[:PROBE_IMAGES].to(device) for t in data["training"])
    finals, states = [], []
    for length in (epochs, epochs + 1):
        seed_everything(seed)
        net = impl.LeNet().to(device)
        with contextlib.redirect_stdout(io.StringIO()):
            states = impl.backprop_with_epoch_states(xtrain, ltrain, net, length)
        finals.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    if len(states) < epochs:
        return f"backprop_deep(T={epochs + 1}) did not draw one np.random.permutation an epoch"
    # CPU arithmetic repeats exactly; a GPU's atomics may round apart, so a T-dependent step is what differs
    for name, want in finals[0].items():
        # on the CPU: a sandboxed net's epoch states come back as arrays, its final weights on its device
        if not torch.allclose(states[epochs - 1][name].cpu(), want.cpu(), rtol=1e-4, atol=1e-6):
            return f"{name} after {epochs} epochs differs between T={epochs} and T={epochs + 1}"
    return None


def feature_maps(net: nn.Module, images: torch.Tensor) -> tuple[dict[str, int], dict[str, list[int]], torch.Tensor]:
    """Q25's look inside `net` (spec.sandbox.reference.feature_maps), here or, for a notebook's, in its worker."""
    return net.feature_maps(images) if isinstance(net, RemoteNet) else reference.feature_maps(net, images)


def load(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put `state`'s weights into `net`, a network here or in a worker."""
    if isinstance(net, RemoteNet):
        net.load_state(state)
    else:
        net.load_state_dict(state)


def epoch_states(net: nn.Module, states: list[dict[str, torch.Tensor]]) -> contextlib.AbstractContextManager:
    """Keep a copy of `net`'s weights at the end of each epoch but the last (reference.at_each_epoch_end)."""
    def take() -> None:
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})

    return reference.at_each_epoch_end(take)
