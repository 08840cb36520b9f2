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
from .fast_cpu import FastLeNetStep, is_lenet, num_threads, pick_threads, tune_malloc
from .model import LeNet, he_init_

LOG_EVERY = 100  # minibatches between printed losses, as in the assignment
# Minibatches one CUDA graph replays: a printed window. (10 replayed as fast and captured
# faster, but two captures failed with it on the GPU runner: the README has the figures.)
GRAPH_STEPS = LOG_EVERY


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


def is_count(value: object, least: int) -> bool:
    """Whether `value` is a whole number (an int, not a bool) of at least `least`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def windows(batches: int) -> Iterator[tuple[int, int]]:
    """An epoch's windows of minibatches, [start, stop): LOG_EVERY each, as train() prints its
    losses, the last cut short at `batches`."""
    for start in range(0, batches, LOG_EVERY):
        yield start, min(start + LOG_EVERY, batches)


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
    warmup: int = 0  # steps over which the rate rises linearly to the schedule's, from lr / warmup

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise InputError(f"recipe {self.name!r}: init must be one of {INITS}, not {self.init!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"recipe {self.name!r}: schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"recipe {self.name!r}: lr must be positive and finite, not {self.lr}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"recipe {self.name!r}: momentum must be in [0, 1), not {self.momentum}")
        if not is_count(self.batch_size, 1):
            raise InputError(f"recipe {self.name!r}: batch_size must be a whole number >= 1, not {self.batch_size!r}")
        if not is_count(self.warmup, 0):
            raise InputError(f"recipe {self.name!r}: warmup must be a whole number of steps >= 0, not {self.warmup!r}")

    def make_net(self) -> LeNet:
        net = LeNet()
        return he_init_(net) if self.init == "he" else net

    def lr_at(self, step: int | torch.Tensor, total: int) -> float | torch.Tensor:
        """The learning rate of step `step` (0-based) of `total`, the warm-up's ramp included;
        a tensor step gives a tensor."""
        rate = self.lr + 0 * step if self.schedule == "constant" else self.lr * (1 - step / total)
        if self.warmup:
            ramp = (step + 1) / self.warmup
            rate = rate * (ramp.clamp(max=1.0) if isinstance(ramp, torch.Tensor) else min(ramp, 1.0))
        return rate


RECIPES = {
    # Exactly the printed recipe.
    "assignment": Recipe("assignment", init="pytorch", lr=0.001, momentum=0.9, batch_size=100),
    # He initialisation, a 50 times larger step, warmed up over 100 steps and decayed linearly
    # to 0: the README says why.
    "default": Recipe("default", init="he", lr=0.05, momentum=0.9, batch_size=100, schedule="linear", warmup=100),
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
    then `run(start, stop)` for consecutive windows of minibatches, in order: minibatch k is
    the images order[k * batch_size : (k + 1) * batch_size], and its mean loss lands in
    `losses[k]`, a tensor on the device that train() reads only after the window.
    """

    losses: torch.Tensor
    threads: int | None  # the CPU thread count it trains with; None: as the caller set it

    def new_epoch(self, order: torch.Tensor) -> None: ...

    def run(self, start: int, stop: int) -> None: ...


class _FastCPUSteps:
    """`fast_cpu.FastLeNetStep` over one epoch's permutation, the learning rate set each step,
    at the thread count asked for, else at the one `fast_cpu.pick_threads` measured fastest."""

    def __init__(
        self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int, threads: int | None
    ) -> None:
        tune_malloc()
        self.x, self.labels, self.recipe, self.total = x, labels, recipe, total
        size = recipe.batch_size
        self.threads: int | None = threads if threads is not None else pick_threads(net, x[:size], labels[:size])
        self.fast = FastLeNetStep(net, recipe.lr, recipe.momentum)
        self.losses = torch.zeros(minibatches(len(x), recipe.batch_size))
        self.order = torch.empty(0, dtype=torch.long)
        self.t = 0  # steps taken

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order = order

    def run(self, start: int, stop: int) -> None:
        size = self.recipe.batch_size
        for k in range(start, stop):
            idx = self.order[k * size : (k + 1) * size]
            self.fast.lr = float(self.recipe.lr_at(self.t, self.total))
            self.losses[k] = self.fast(self.x.index_select(0, idx), self.labels.index_select(0, idx))
            self.t += 1


class _DeviceSteps:
    """SGD steps with all their state on the device, so that CUDA can replay a window of them from a graph.

    Minibatch k of an epoch takes its images from `order`, its learning rate from `rates` (the
    recipe's schedule for every step of the run, computed once) and writes its loss into
    `losses`. A graph replays up to `graph_steps` full minibatches with every address fixed,
    so a replay copies its part of `order` and `rates` into window buffers first and the
    losses out afterwards: three copies for up to `graph_steps` steps. Minibatches no graph
    covers (a short last one, or all of them where there is no graph) run eagerly.

    `lead` is () for one run; the sweep's population of S runs has lead (S,), one order and
    one row of losses per run. The update is torch.optim.SGD's, fused, with the rate a tensor.
    """

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        recipe: Recipe,
        total: int,
        params: list[torch.Tensor],
        lead: tuple[int, ...] = (),
        graph_steps: int = GRAPH_STEPS,
    ) -> None:
        self.x, self.labels, self.recipe, self.params = x, labels, recipe, params
        self.threads: int | None = None
        self.graph_steps = min(graph_steps, LOG_EVERY)
        device, size = x.device, recipe.batch_size
        self.batches, self.full = minibatches(len(x), size), len(x) // size
        steps = torch.arange(total, dtype=torch.float64)
        self.rates = recipe.lr_at(steps, total).to(device=device, dtype=params[0].dtype)
        self.order = torch.zeros(*lead, len(x), dtype=torch.long, device=device)
        self.losses = torch.zeros(*lead, self.batches, device=device)
        self.epoch_start = -self.batches  # the run's step count at this epoch's first minibatch
        span = min(self.graph_steps, self.full)  # the most minibatches a graph replays
        self.window_order = torch.zeros(*lead, span * size, dtype=torch.long, device=device)
        self.window_rates = torch.zeros(span, dtype=self.rates.dtype, device=device)
        self.window_losses = torch.zeros(*lead, span, device=device)
        self.optimizer = torch.optim.SGD(params, lr=self.rates[0], momentum=recipe.momentum, fused=True)
        for p in params:  # 0 * momentum + g is SGD's first step
            self.optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # by the number of minibatches replayed

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.epoch_start += self.batches

    def run(self, start: int, stop: int) -> None:
        size = self.recipe.batch_size
        while start < stop:  # graphs replay the full minibatches, graph_steps at most at a time
            span = min(self.graph_steps, min(stop, self.full) - start)
            graph = self.graphs.get(span)
            if graph is None:
                break
            t = self.epoch_start + start
            self.window_order.narrow(-1, 0, span * size).copy_(self.order.narrow(-1, start * size, span * size))
            self.window_rates[:span].copy_(self.rates[t : t + span])
            graph.replay()
            self.losses.narrow(-1, start, span).copy_(self.window_losses.narrow(-1, 0, span))
            start += span
        for k in range(start, stop):
            idx = self.order.narrow(-1, k * size, min(size, self.order.shape[-1] - k * size))
            self.losses.select(-1, k).copy_(self._step(idx, self.rates[self.epoch_start + k]))

    def spans(self) -> set[int]:
        """The numbers of full minibatches run() replays at once, over train()'s windows of LOG_EVERY."""
        spans = set()
        for window, end in windows(self.full):
            spans.update(min(self.graph_steps, end - start) for start in range(window, end, self.graph_steps))
        return spans

    def _step(self, idx: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """Train on the images `idx` with learning rate `rate`; the minibatch's loss."""
        raise NotImplementedError

    def _update(self, grads: tuple[torch.Tensor, ...], rate: torch.Tensor) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.param_groups[0]["lr"] = rate
        self.optimizer.step()
        for p in self.params:
            p.grad = None

    def _state(self) -> list[torch.Tensor]:
        buffers = [self.optimizer.state[p]["momentum_buffer"] for p in self.params]
        return [*self.params, *buffers, self.losses, self.window_order, self.window_rates, self.window_losses]

    def capture(self) -> None:
        """Capture a graph for each number of full minibatches run() replays at once
        (`spans()`), leaving no trace in the run.

        The warm-up the CUDA-graph docs ask for (steps on a side stream) trains on minibatch 0
        of the current order; afterwards the weights, momentum, losses, window buffers and the
        CUDA generator are put back as they were. A data set smaller than one minibatch has no
        full minibatch, and no graph."""
        spans = self.spans()
        if not spans:
            return
        device, size = self.x.device, self.recipe.batch_size
        saved = [s.detach().clone() for s in self._state()]
        rng = torch.cuda.get_rng_state(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(self.order[..., :size], self.rates[0])
        torch.cuda.current_stream(device).wait_stream(side)
        pool = torch.cuda.graph_pool_handle()
        for span in sorted(spans, reverse=True):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                for j in range(span):
                    idx = self.window_order.narrow(-1, j * size, size)
                    self.window_losses.select(-1, j).copy_(self._step(idx, self.window_rates[j]))
            self.graphs[span] = graph
        with torch.no_grad():
            for state, value in zip(self._state(), saved, strict=True):
                state.copy_(value)
        torch.cuda.set_rng_state(rng, device)


class _AutogradSteps(_DeviceSteps):
    """One run: the net's own forward, its gradients from autograd."""

    def __init__(
        self,
        net: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        recipe: Recipe,
        total: int,
        graph_steps: int = GRAPH_STEPS,
    ) -> None:
        self.net = net
        super().__init__(x, labels, recipe, total, list(net.parameters()), graph_steps=graph_steps)

    def _step(self, idx: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(self.net(self.x.index_select(0, idx)), self.labels.index_select(0, idx))
        self._update(torch.autograd.grad(loss, self.params), rate)
        return loss.detach()


def _check_data(x: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
    """Refuse, on the host and before any work, what would fail or read out of bounds on the device."""
    if not is_count(epochs, 1):
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
    engine: str, net: nn.Module, x: torch.Tensor, labels: torch.Tensor, recipe: Recipe, total: int, threads: int | None
) -> Steps:
    """The engine `engine` names. "auto" is fast_cpu for a LeNet on the CPU where this PyTorch has the
    overloads it calls (`fast_cpu.supported()`), else autograd, captured in a graph on CUDA."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "auto":
        engine = "fast_cpu" if x.device.type == "cpu" and is_lenet(net) and fast_cpu.supported() else "autograd"
    if engine == "fast_cpu":
        return _FastCPUSteps(net, x, labels, recipe, total, threads)
    steps = _AutogradSteps(net, x, labels, recipe, total)
    if x.device.type == "cpu":
        steps.threads = threads
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
    threads: int | None = None,
) -> TrainResult:
    """Train LeNet-5 with `recipe` for `epochs`: the package's fast path.

    The arithmetic is `backprop_deep`'s (same loss, optimiser and minibatches for the
    same permutations; the recipe's schedule aside), but the data sits on the device
    once and the losses stay there until they are printed every 100 minibatches.
    `engine` picks the steps (`Steps`): "fast_cpu" trains a LeNet on the CPU with
    `fast_cpu.FastLeNetStep` (and sets glibc's malloc to keep freed memory, process-wide), at
    `threads` CPU threads, else at the count `fast_cpu.pick_threads` measured fastest (at most
    torch.get_num_threads(); the caller's count is put back afterwards);
    "autograd" uses `_AutogradSteps`, windows of which CUDA replays from graphs; "auto" picks
    fast_cpu for a LeNet on the CPU. `seed` fixes the initial weights and, unless `rng` is given,
    the shuffling. `on_epoch(epoch, result)` runs after each epoch and
    `on_log(epoch, minibatch, result)` at each printed loss, both outside the timing.
    """
    _check_data(xtrain, ltrain, epochs)
    if threads is not None and not is_count(threads, 1):
        raise InputError(f"threads must be a whole number >= 1, not {threads!r}")
    device = choose_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed) if rng is None else rng
    net = (recipe.make_net() if net is None else net).to(device)
    x, labels = xtrain.to(device).contiguous(), ltrain.to(device)
    n, batches = len(x), minibatches(len(x), recipe.batch_size)
    steps = _make_steps(engine, net, x, labels, recipe, epochs * batches, threads)

    result = TrainResult(net)
    with contextlib.nullcontext() if steps.threads is None else num_threads(steps.threads):
        for epoch in range(1, epochs + 1):
            clock = _Stopwatch(device)
            steps.new_epoch(torch.from_numpy(rng.permutation(n)).to(device))
            for start, stop in windows(batches):
                steps.run(start, stop)
                recent = _checked_losses(steps.losses, start, stop, epoch)
                if stop - start < LOG_EVERY:  # the epoch's tail: checked, not printed
                    continue
                mean = sum(recent) / len(recent)
                result.loss_log.append([epoch, stop, mean])
                if log is not None:
                    log("[%d, %5d] loss: %.3f" % (epoch, stop, mean))
                if on_log is not None:
                    result.seconds = sum(result.epoch_seconds) + clock.seconds()
                    with clock.paused():
                        on_log(epoch, stop, result)
            result.epoch_seconds.append(clock.seconds())
            result.seconds = sum(result.epoch_seconds)
            if on_epoch is not None:
                on_epoch(epoch, result)
    return result
