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

from .fast_cpu import FastLeNetStep, is_lenet, tune_malloc
from .model import LeNet, he_init_

LOG_EVERY = 100  # minibatches between printed losses, as in the assignment


class TrainingDivergedError(RuntimeError):
    """A minibatch loss became NaN, infinite or larger than DIVERGED_LOSS."""


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


# Cross-entropy over 10 classes starts near ln 10 = 2.3; a minibatch's mean loss above
# this means the weights have blown up (at --lr 100 it reached 5e32, then the net sat at
# one class, 11%), and no run of this network comes back from there to anything useful.
DIVERGED_LOSS = 1000.0


def _check_loss(loss: float, epoch: int, minibatch: int) -> None:
    if not math.isfinite(loss) or loss > DIVERGED_LOSS:
        raise TrainingDivergedError(
            f"loss became {loss:.4g} at epoch {epoch}, minibatch {minibatch}: training diverged, "
            "the learning rate is too high"
        )


def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=0.001, rho=0.9):
    """The assignment's loop (Q29-Q30), as printed: SGD with momentum on the
    cross-entropy, reshuffled every epoch, the mean loss printed every 100
    minibatches as `[epoch, k] loss: x.xxx`. Returns those rows as
    `[epoch, k, loss]`, and stops with `TrainingDivergedError` when the loss diverges
    (NaN, infinite, or above DIVERGED_LOSS)."""
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
            _check_loss(value, epoch + 1, k + 1)
            running_loss += value
            if k % LOG_EVERY == LOG_EVERY - 1:
                print("[%d, %5d] loss: %.3f" % (epoch + 1, k + 1, running_loss / LOG_EVERY))
                log.append([epoch + 1, k + 1, running_loss / LOG_EVERY])
                running_loss = 0.0
    return log


@dataclass(frozen=True)
class Recipe:
    """How to train: initialisation, optimiser settings, batch size and learning-rate schedule."""

    name: str
    init: str  # "pytorch" (the layers' own default) or "he"
    lr: float
    momentum: float
    batch_size: int
    schedule: str = "constant"  # or "linear": from lr down to 0 over the run

    def make_net(self) -> LeNet:
        net = LeNet()
        return he_init_(net) if self.init == "he" else net

    def lr_at(self, step: int | torch.Tensor, total: int) -> float | torch.Tensor:
        """The learning rate of step `step` (0-based) of `total`; a tensor step gives a tensor."""
        if self.schedule == "constant":
            return self.lr + 0 * step
        return self.lr * (1 - step / total)


RECIPES = {
    # Exactly the printed recipe.
    "assignment": Recipe("assignment", init="pytorch", lr=0.001, momentum=0.9, batch_size=100),
    # He initialisation, a 50 times larger step, decayed linearly to 0: the README says why.
    "default": Recipe("default", init="he", lr=0.05, momentum=0.9, batch_size=100, schedule="linear"),
}
ENGINES = ("auto", "autograd", "fast_cpu")


@dataclass
class TrainResult:
    net: LeNet
    loss_log: list[list[float]] = field(default_factory=list)  # [epoch, minibatch, mean loss]
    epoch_seconds: list[float] = field(default_factory=list)  # training only, no evaluation
    seconds: float = 0.0  # training so far, as of the last printed loss or epoch end


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _FastCPUSteps:
    """`fast_cpu.FastLeNetStep` over one epoch's permutation, the learning rate set each step."""

    def __init__(self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int) -> None:
        tune_malloc()
        self.x, self.labels, self.recipe, self.total = x, labels, recipe, total
        self.fast = FastLeNetStep(net, recipe.lr, recipe.momentum)
        self.losses = torch.zeros(-(-len(x) // recipe.batch_size))
        self.order = torch.empty(0, dtype=torch.long)
        self.t = 0  # steps taken

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order = order

    def __call__(self, k: int) -> None:
        """Minibatch k of the epoch."""
        size = self.recipe.batch_size
        idx = self.order[k * size : (k + 1) * size]
        self.fast.lr = float(self.recipe.lr_at(self.t, self.total))
        self.losses[k] = self.fast(self.x.index_select(0, idx), self.labels.index_select(0, idx))
        self.t += 1


class _DeviceSteps:
    """SGD steps with all their state on the device, so that CUDA can capture one in a graph.

    The minibatch is read from `order` at a device-side counter, the learning rate comes
    from a device-side step count, and each loss lands in `losses`: a step needs nothing
    from the host. SGD's update is torch.optim.SGD's (dampening 0), spelled with a tensor
    learning rate.
    """

    def __init__(self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int) -> None:
        self.net, self.x, self.labels, self.recipe, self.total = net, x, labels, recipe, total
        device = x.device
        self.params = list(net.parameters())
        self.buffers = [torch.zeros_like(p) for p in self.params]  # 0 * momentum + g == SGD's first step
        self.order = torch.zeros(len(x), dtype=torch.long, device=device)
        self.offsets = torch.arange(recipe.batch_size, device=device)
        self.k = torch.zeros((), dtype=torch.long, device=device)  # minibatch within the epoch
        self.t = torch.zeros((), device=device)  # steps taken
        self.losses = torch.zeros(-(-len(x) // recipe.batch_size), device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.k.zero_()

    def __call__(self, k: int) -> None:
        """Minibatch k of the epoch: a graph replay where one was captured and the minibatch is full."""
        count = min(self.recipe.batch_size, len(self.x) - k * self.recipe.batch_size)
        if self.graph is not None and count == self.recipe.batch_size:
            self.graph.replay()
        else:  # on the CPU, or a short last minibatch: a graph replays one shape only
            self.step(count)

    def step(self, count: int) -> None:
        """Train on the next `count` images of `order`."""
        idx = self.order.index_select(0, self.k * self.recipe.batch_size + self.offsets[:count])
        loss = F.cross_entropy(self.net(self.x.index_select(0, idx)), self.labels.index_select(0, idx))
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            torch._foreach_mul_(self.buffers, self.recipe.momentum)
            torch._foreach_add_(self.buffers, grads)
            lr = self.recipe.lr_at(self.t, self.total)
            torch._foreach_sub_(self.params, torch._foreach_mul(self.buffers, lr))
            self.losses.index_copy_(0, self.k.view(1), loss.detach().view(1))
            self.k.add_(1)
            self.t.add_(1)

    def capture(self) -> None:
        """Capture a full minibatch's step in a CUDA graph."""
        saved = [p.detach().clone() for p in self.params]
        # Warm up on a side stream, as the CUDA-graph docs ask; then undo the warm-up.
        side = torch.cuda.Stream(self.x.device)
        side.wait_stream(torch.cuda.current_stream(self.x.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.step(self.recipe.batch_size)
        torch.cuda.current_stream(self.x.device).wait_stream(side)
        with torch.no_grad():
            for p, s in zip(self.params, saved, strict=True):
                p.copy_(s)
            for state in (*self.buffers, self.k, self.t):
                state.zero_()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step(self.recipe.batch_size)


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
    on_log: Callable[[int, int, TrainResult], None] | None = None,
    engine: str = "auto",
) -> TrainResult:
    """Train LeNet-5 with `recipe` for `epochs`: the package's fast path.

    The arithmetic is `backprop_deep`'s (same loss, optimiser and minibatches for the
    same permutations; the recipe's schedule aside), but the data sits on the device
    once and the losses stay there until they are printed every 100 minibatches.
    `engine` "fast_cpu" trains a LeNet on the CPU with `fast_cpu.FastLeNetStep` (and sets
    glibc's malloc to keep freed memory, process-wide); "autograd" uses `_DeviceStep`,
    captured in a CUDA graph on CUDA; "auto" picks fast_cpu for a LeNet on the CPU.
    `seed` fixes the initial weights and, unless `rng` is given, the shuffling.
    `on_epoch(epoch, result)` runs after each epoch and `on_log(epoch, minibatch, result)`
    at each printed loss, both outside the timing.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    device = choose_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed) if rng is None else rng
    net = (recipe.make_net() if net is None else net).to(device)
    x = xtrain.to(device).contiguous()
    labels = ltrain.to(device)
    n, size = len(x), recipe.batch_size
    batches = -(-n // size)
    total = epochs * batches
    if engine == "auto":
        engine = "fast_cpu" if device.type == "cpu" and is_lenet(net) else "autograd"

    if engine == "fast_cpu":
        steps: _FastCPUSteps | _DeviceSteps = _FastCPUSteps(net, x, labels, recipe, total)
    else:
        steps = _DeviceSteps(net, x, labels, recipe, total)
        if device.type == "cuda":
            steps.capture()

    result = TrainResult(net)
    for epoch in range(1, epochs + 1):
        _sync(device)
        start, paused = time.perf_counter(), 0.0
        steps.new_epoch(torch.from_numpy(rng.permutation(n)).to(device))
        block = 0
        for k in range(batches):
            steps(k)
            if k % LOG_EVERY == LOG_EVERY - 1:
                recent = steps.losses[block : k + 1].tolist()
                for offset, value in enumerate(recent):
                    _check_loss(value, epoch, block + offset + 1)
                mean = sum(recent) / len(recent)
                result.loss_log.append([epoch, k + 1, mean])
                if log is not None:
                    log("[%d, %5d] loss: %.3f" % (epoch, k + 1, mean))
                if on_log is not None:
                    result.seconds = sum(result.epoch_seconds) + time.perf_counter() - start - paused
                    pause = time.perf_counter()
                    on_log(epoch, k + 1, result)
                    paused += time.perf_counter() - pause
                block = k + 1
        for offset, value in enumerate(steps.losses[block:batches].tolist()):
            _check_loss(value, epoch, block + offset + 1)
        _sync(device)
        result.epoch_seconds.append(time.perf_counter() - start - paused)
        result.seconds = sum(result.epoch_seconds)
        if on_epoch is not None:
            on_epoch(epoch, result)
    return result
