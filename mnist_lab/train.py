"""Training and evaluation (Q28-Q33): the printed loop and the package's fast one."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fast_cpu import FastLeNetStep, is_lenet, prepare_images, tune_malloc
from .model import LeNet, he_init_

LOG_EVERY = 100  # minibatches between printed losses, as in the assignment


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def choose_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA where there is one, else the CPU (Q15); 'cpu' and 'cuda' are taken as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but CUDA is not available here")
    return torch.device(name)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 10_000) -> float:
    """Percentage of `x` that `net` classifies as `labels`, on the net's device."""
    device = next(net.parameters()).device
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device, non_blocking=True)
        yb = labels[start : start + batch_size].to(device, non_blocking=True)
        correct += (net(xb).argmax(1) == yb).sum()
    return 100.0 * int(correct) / len(x)


def _check_finite(loss: float, epoch: int, minibatch: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"loss became {loss} at epoch {epoch}, minibatch {minibatch}: the learning rate is too high"
        )


def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=0.001, rho=0.9):
    """The assignment's loop (Q29-Q30), as printed: SGD with momentum on the
    cross-entropy, reshuffled every epoch, the mean loss printed every 100
    minibatches as `[epoch, k] loss: x.xxx`. Returns those rows as
    `[epoch, k, loss]`, and stops with `TrainingDivergedError` on a NaN loss."""
    N = xtrain.size()[0]
    NB = int((N + B - 1) / B)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=gamma, momentum=rho)
    log = []
    for epoch in range(T):
        running_loss = 0.0
        shuffled_indices = np.random.permutation(range(N))
        for k in range(NB):
            minibatch_indices = shuffled_indices[B * k : min(B * (k + 1), N)]
            inputs = xtrain[minibatch_indices, :, :, :]
            labels = ltrain[minibatch_indices]
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            value = loss.item()
            _check_finite(value, epoch + 1, k + 1)
            running_loss += value
            if k % LOG_EVERY == LOG_EVERY - 1:
                print("[%d, %5d] loss: %.3f" % (epoch + 1, k + 1, running_loss / LOG_EVERY))
                log.append([epoch + 1, k + 1, running_loss / LOG_EVERY])
                running_loss = 0.0
    return log


@dataclass(frozen=True)
class Recipe:
    """How to train: initialisation, optimiser settings and batch size."""

    name: str
    init: str  # "pytorch" (the layers' own default) or "he"
    lr: float
    momentum: float
    batch_size: int

    def make_net(self) -> LeNet:
        net = LeNet()
        return he_init_(net) if self.init == "he" else net


RECIPES = {
    # Exactly the printed recipe.
    "assignment": Recipe("assignment", init="pytorch", lr=0.001, momentum=0.9, batch_size=100),
    # He initialisation and a 20 times larger step: the README says why.
    "default": Recipe("default", init="he", lr=0.02, momentum=0.9, batch_size=100),
}


@dataclass
class TrainResult:
    net: LeNet
    loss_log: list[list[float]] = field(default_factory=list)  # [epoch, minibatch, mean loss]
    epoch_seconds: list[float] = field(default_factory=list)  # training only, no evaluation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eager_step(
    net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, labels: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(idx: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x.index_select(0, idx)), labels.index_select(0, idx))
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _graphed_step(
    step: Callable[[torch.Tensor], torch.Tensor],
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    device: torch.device,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`step` captured once in a CUDA graph: each later step is one copy and one replay."""
    static_idx = torch.zeros(batch_size, dtype=torch.long, device=device)
    # Warm up on a side stream, as the CUDA-graph docs ask, so that lazily built
    # state (the momentum buffers) exists before the capture.
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step(static_idx)
    torch.cuda.current_stream(device).wait_stream(side)
    # The warm-up is not training: put the weights back and zero the momentum,
    # which SGD then treats exactly as a first step.
    net.load_state_dict(weights)
    for buffer in (optimizer.state[p].get("momentum_buffer") for p in net.parameters()):
        if buffer is not None:
            buffer.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step(static_idx)

    def replay(idx: torch.Tensor) -> torch.Tensor:
        static_idx.copy_(idx)
        graph.replay()
        return static_loss  # overwritten by the next replay: copy it before then

    return replay


def train(
    xtrain: torch.Tensor,
    ltrain: torch.Tensor,
    *,
    recipe: Recipe = RECIPES["default"],
    epochs: int = 3,
    seed: int = 0,
    device: str | torch.device = "auto",
    net: nn.Module | None = None,
    rng: np.random.Generator | np.random.RandomState | None = None,
    log: Callable[[str], None] | None = print,
    on_epoch: Callable[[int, TrainResult], None] | None = None,
) -> TrainResult:
    """Train LeNet-5 with `recipe` for `epochs`: the package's fast path.

    The arithmetic is `backprop_deep`'s (same loss, optimiser and minibatches for the
    same permutations), but the data sits on the device once and the losses stay there
    until they are printed every 100 minibatches. On the CPU a LeNet trains with
    `fast_cpu.FastLeNetStep` (which also sets glibc's malloc to keep freed memory,
    process-wide); on CUDA each step is a CUDA graph replay. `seed` fixes the initial
    weights and, unless `rng` is given, the shuffling. `on_epoch(epoch, result)` runs
    after each epoch, outside the timing.
    """
    device = choose_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed) if rng is None else rng
    net = (recipe.make_net() if net is None else net).to(device)
    x = xtrain.to(device).contiguous()
    labels = ltrain.to(device)
    n, size = len(x), recipe.batch_size
    batches = -(-n // size)
    if device.type == "cpu" and is_lenet(net):
        tune_malloc()
        phases = prepare_images(x)
        fast = FastLeNetStep(net, recipe.lr, recipe.momentum)
        step = full_step = lambda idx: fast(phases.index_select(0, idx), labels.index_select(0, idx))
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum)
        step = _eager_step(net, optimizer, x, labels)
        full_step = _graphed_step(step, net, optimizer, size, device) if device.type == "cuda" else step

    result = TrainResult(net)
    losses = torch.empty(batches, device=device)
    for epoch in range(1, epochs + 1):
        _sync(device)
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(n)).to(device)
        block = 0
        for k in range(batches):
            idx = order[k * size : (k + 1) * size]
            # A short last minibatch runs eagerly: a graph replays one shape only.
            losses[k] = (full_step if len(idx) == size else step)(idx)
            if k % LOG_EVERY == LOG_EVERY - 1:
                recent = losses[block : k + 1].tolist()
                for offset, value in enumerate(recent):
                    _check_finite(value, epoch, block + offset + 1)
                mean = sum(recent) / len(recent)
                result.loss_log.append([epoch, k + 1, mean])
                if log is not None:
                    log("[%d, %5d] loss: %.3f" % (epoch, k + 1, mean))
                block = k + 1
        for offset, value in enumerate(losses[block:batches].tolist()):
            _check_finite(value, epoch, block + offset + 1)
        _sync(device)
        result.epoch_seconds.append(time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(epoch, result)
    return result
