"""Training and evaluation (Q28-Q33): the printed loop and the package's fast one."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import fast_cpu
from .errors import InputError
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
        raise InputError(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda asked for, but CUDA is not available here")
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
# this means the weights have blown up, and no run of this network comes back from
# there to anything useful (the README shows what --lr 100 does).
DIVERGED_LOSS = 1000.0


def _check_loss(loss: float, epoch: int, minibatch: int) -> None:
    if not math.isfinite(loss) or loss > DIVERGED_LOSS:
        raise TrainingDivergedError(
            f"loss became {loss:.4g} at epoch {epoch}, minibatch {minibatch}: training diverged, "
            "the learning rate is too high"
        )


def minibatches(n: int, batch_size: int) -> int:
    """How many minibatches of at most `batch_size` cover `n` images: ceil(n / batch_size)."""
    return -(-n // batch_size)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that the host's clock reads the work done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


INITS = ("pytorch", "he")  # the layers' own default, or He (kaiming-normal) with zero biases
SCHEDULES = ("constant", "linear")  # linear: from lr down to 0 over the run


@dataclass(frozen=True)
class Recipe:
    """How to train: initialisation, optimiser settings, batch size and learning-rate schedule."""

    name: str
    init: str  # one of INITS
    lr: float
    momentum: float
    batch_size: int
    schedule: str = "constant"  # one of SCHEDULES

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise InputError(f"recipe {self.name!r}: init must be one of {INITS}, not {self.init!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"recipe {self.name!r}: schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"recipe {self.name!r}: lr must be positive and finite, not {self.lr}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"recipe {self.name!r}: momentum must be in [0, 1), not {self.momentum}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"recipe {self.name!r}: batch_size must be a whole number >= 1, not {self.batch_size!r}")

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
CLASSES = 10  # MNIST's digits: the labels train() takes are 0-9


@dataclass
class TrainResult:
    net: LeNet
    loss_log: list[list[float]] = field(default_factory=list)  # [epoch, minibatch, mean loss]
    epoch_seconds: list[float] = field(default_factory=list)  # training only, no evaluation
    seconds: float = 0.0  # training so far, as of the last printed loss or epoch end


class Steps(Protocol):
    """An engine: the SGD steps of one run, which train() drives.

    Each epoch train() calls `new_epoch(order)` with that epoch's permutation of the images,
    then the engine once for each minibatch k = 0, 1, ..., in order; minibatch k is the
    images order[k * batch_size : (k + 1) * batch_size]. Its mean loss lands in `losses[k]`,
    a tensor on the device that train() reads only when it prints.
    """

    losses: torch.Tensor

    def new_epoch(self, order: torch.Tensor) -> None: ...

    def __call__(self, k: int) -> None: ...


class _FastCPUSteps:
    """`fast_cpu.FastLeNetStep` over one epoch's permutation, the learning rate set each step."""

    def __init__(self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int) -> None:
        tune_malloc()
        self.x, self.labels, self.recipe, self.total = x, labels, recipe, total
        self.fast = FastLeNetStep(net, recipe.lr, recipe.momentum)
        self.losses = torch.zeros(minibatches(len(x), recipe.batch_size))
        self.order = torch.empty(0, dtype=torch.long)
        self.t = 0  # steps taken

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order = order

    def __call__(self, k: int) -> None:
        size = self.recipe.batch_size
        idx = self.order[k * size : (k + 1) * size]
        self.fast.lr = float(self.recipe.lr_at(self.t, self.total))
        self.losses[k] = self.fast(self.x.index_select(0, idx), self.labels.index_select(0, idx))
        self.t += 1


class _DeviceSteps:
    """SGD steps with all their state on the device, so that CUDA can capture one in a graph.

    A step reads its minibatch from `order` at a device-side minibatch counter `k`, its
    learning rate from a device-side step count `t`, and writes its loss into `losses`: it
    needs nothing from the host, and a graph replays it as it is. SGD's update is
    torch.optim.SGD's (dampening 0), spelled with a tensor learning rate.
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
        self.losses = torch.zeros(minibatches(len(x), recipe.batch_size), device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.k.zero_()

    def __call__(self, k: int) -> None:
        """Minibatch k, which the device's counter also holds: the host needs k only for the
        minibatch's size. A full one replays the graph, where one was captured; a short last
        one runs eagerly, since a graph replays one shape only."""
        count = min(self.recipe.batch_size, len(self.x) - k * self.recipe.batch_size)
        if self.graph is not None and count == self.recipe.batch_size:
            self.graph.replay()
        else:
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

    def _state(self) -> list[torch.Tensor]:
        return [*self.params, *self.buffers, self.k, self.t, self.losses]

    def capture(self) -> None:
        """Capture a full minibatch's step in a CUDA graph, leaving no trace in the run.

        The warm-up the CUDA-graph docs ask for (steps on a side stream) trains on minibatch
        0 of the current order, which exists wherever a full minibatch does; afterwards the
        weights, momentum, counters, losses and the CUDA generator are put back as they were.
        A data set smaller than one minibatch has no full minibatch, and no graph."""
        if len(self.x) < self.recipe.batch_size:
            return
        device = self.x.device
        saved = [s.detach().clone() for s in self._state()]
        rng = torch.cuda.get_rng_state(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.k.zero_()
                self.step(self.recipe.batch_size)
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for state, value in zip(self._state(), saved, strict=True):
                state.copy_(value)
        torch.cuda.set_rng_state(rng, device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step(self.recipe.batch_size)


def _check_data(x: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
    """Refuse, on the host and before any work, what would fail or read out of bounds on the device."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a whole number >= 1, not {epochs!r}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise InputError(f"images must be (N, 1, 28, 28), not {tuple(x.shape)}")
    if len(x) == 0:
        raise InputError("no images to train on")
    if not x.is_floating_point():
        raise InputError(f"images must be floating point, not {x.dtype}")
    if labels.dim() != 1 or len(labels) != len(x):
        raise InputError(f"labels must be (N,) = ({len(x)},) for {len(x)} images, not {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise InputError(f"labels must be int64 (torch.long), not {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= CLASSES:
        raise InputError(f"labels must be 0-{CLASSES - 1}: found {low if low < 0 else high}")


def _make_steps(
    engine: str, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int
) -> Steps:
    """The engine `engine` names. "auto" is fast_cpu for a LeNet on the CPU where this PyTorch has the
    overloads it calls (`fast_cpu.supported()`), else autograd, captured in a graph on CUDA."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "auto":
        engine = "fast_cpu" if x.device.type == "cpu" and is_lenet(net) and fast_cpu.supported() else "autograd"
    if engine == "fast_cpu":
        return _FastCPUSteps(net, x, labels, recipe, total)
    steps = _DeviceSteps(net, x, labels, recipe, total)
    if x.device.type == "cuda":
        steps.capture()
    return steps


def _checked_losses(losses: torch.Tensor, start: int, stop: int, epoch: int) -> list[float]:
    """Minibatches start+1 .. stop of the epoch: their losses, each checked for divergence."""
    values = losses[start:stop].tolist()
    for offset, value in enumerate(values):
        _check_loss(value, epoch, start + offset + 1)
    return values


class _Stopwatch:
    """Seconds of work on `device` since it was made: each reading waits for the device,
    and the time spent inside `paused()` is left out."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        sync(device)
        self.start, self.excluded = time.perf_counter(), 0.0

    def seconds(self) -> float:
        sync(self.device)
        return time.perf_counter() - self.start - self.excluded

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - start


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
    `engine` picks the steps (`Steps`): "fast_cpu" trains a LeNet on the CPU with
    `fast_cpu.FastLeNetStep` (and sets glibc's malloc to keep freed memory, process-wide);
    "autograd" uses `_DeviceSteps`, captured in a CUDA graph on CUDA; "auto" picks fast_cpu
    for a LeNet on the CPU. `seed` fixes the initial weights and, unless `rng` is given,
    the shuffling. `on_epoch(epoch, result)` runs after each epoch and
    `on_log(epoch, minibatch, result)` at each printed loss, both outside the timing.
    """
    _check_data(xtrain, ltrain, epochs)
    device = choose_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed) if rng is None else rng
    net = (recipe.make_net() if net is None else net).to(device)
    x, labels = xtrain.to(device).contiguous(), ltrain.to(device)
    n, batches = len(x), minibatches(len(x), recipe.batch_size)
    steps = _make_steps(engine, net, x, labels, recipe, epochs * batches)

    result = TrainResult(net)
    for epoch in range(1, epochs + 1):
        clock = _Stopwatch(device)
        steps.new_epoch(torch.from_numpy(rng.permutation(n)).to(device))
        logged = 0  # minibatches of this epoch whose losses were read
        for k in range(batches):
            steps(k)
            if k % LOG_EVERY == LOG_EVERY - 1:
                recent = _checked_losses(steps.losses, logged, k + 1, epoch)
                logged = k + 1
                mean = sum(recent) / len(recent)
                result.loss_log.append([epoch, k + 1, mean])
                if log is not None:
                    log("[%d, %5d] loss: %.3f" % (epoch, k + 1, mean))
                if on_log is not None:
                    result.seconds = sum(result.epoch_seconds) + clock.seconds()
                    with clock.paused():
                        on_log(epoch, k + 1, result)
        _checked_losses(steps.losses, logged, batches, epoch)
        result.epoch_seconds.append(clock.seconds())
        result.seconds = sum(result.epoch_seconds)
        if on_epoch is not None:
            on_epoch(epoch, result)
    return result
