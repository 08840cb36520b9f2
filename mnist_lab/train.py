"""Training and evaluation (Q28-Q33): the printed loop and the package's fast one, train(), which runs a
recipe (recipe.py) as its `TrainOptions` say, its epochs `Driver` over a step engine (engines.py); the
sweep's population of seeds runs on the Driver too."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .engines import LOG_EVERY, Steps, make_steps, minibatches, windows
from .errors import InputError
from .fast_cpu import num_threads
from .model import LeNet
from .recipe import RECIPES, Recipe, is_count


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
# there to anything useful (docs/differences.md shows what --lr 100 does).
DIVERGED_LOSS = 1000.0


def _check_loss(loss: float, epoch: int, minibatch: int) -> None:
    if not math.isfinite(loss) or loss > DIVERGED_LOSS:
        raise TrainingDivergedError(
            f"loss became {loss:.4g} at epoch {epoch}, minibatch {minibatch}: training diverged, "
            "the learning rate is too high"
        )


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


CLASSES = 10  # MNIST's digits: the labels train() takes are 0-9


@dataclass
class TrainResult:
    net: LeNet
    loss_log: list[list[float]] = field(default_factory=list)  # [epoch, minibatch, mean loss]
    epoch_seconds: list[float] = field(default_factory=list)  # training only, no evaluation
    seconds: float = 0.0  # training so far, as of the last printed loss or epoch end
    engine: dict[str, Any] = field(default_factory=dict)  # the steps' engine and its choices (Steps.describe)


def check_data(x: torch.Tensor, labels: torch.Tensor, epochs: int) -> None:
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


class Stopwatch:
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


@dataclass
class Driver:
    """The epochs of `steps` for its runs: one, or the S of a population (its lead dimension).

    Each epoch runs on a clock of its own: every run's permutation of the `images` from its own
    generator in `rngs`, then `windows` of minibatches. After each window every run's losses are
    checked for divergence (the error names run i as `names[i]`; None: one run, unnamed) and, for
    a full window, their mean goes into the run's result and to `log`. Outside the timing:
    `on_log(i, epoch, minibatch, result)` after each full window, and at each epoch's end
    `after_epoch()`, then `on_epoch(i, epoch, result)` for each run i.
    """

    steps: Steps
    results: list[TrainResult]  # one a run, in the lead dimension's order
    rngs: Sequence[np.random.Generator | np.random.RandomState]
    images: int
    device: torch.device
    names: Sequence[str] | None = None
    log: Callable[[str], None] | None = None
    on_log: Callable[[int, int, int, TrainResult], None] | None = None
    on_epoch: Callable[[int, int, TrainResult], None] | None = None
    after_epoch: Callable[[], None] | None = None

    def train(self, epochs: int) -> None:
        steps = self.steps
        with contextlib.nullcontext() if steps.threads is None else num_threads(steps.threads):
            for epoch in range(1, epochs + 1):
                clock = Stopwatch(self.device)
                orders = np.stack([rng.permutation(self.images) for rng in self.rngs])
                steps.new_epoch(torch.from_numpy(orders).view(*steps.losses.shape[:-1], self.images).to(self.device))
                for start, stop in windows(steps.losses.shape[-1]):
                    steps.run(start, stop)
                    self._window(epoch, start, stop, clock)
                self._end_epoch(epoch, clock.seconds())

    def _window(self, epoch: int, start: int, stop: int, clock: Stopwatch) -> None:
        losses = self.steps.losses
        rows = losses.view(-1, losses.shape[-1])[:, start:stop].tolist()  # one read from the device a window
        for i, values in enumerate(rows):
            self._check(i, values, epoch, start)
        if stop - start < LOG_EVERY:  # the epoch's tail: checked, not logged
            return
        for result, values in zip(self.results, rows, strict=True):
            mean = sum(values) / len(values)
            result.loss_log.append([epoch, stop, mean])
            if self.log is not None:
                self.log("[%d, %5d] loss: %.3f" % (epoch, stop, mean))
        if self.on_log is not None:
            seconds = clock.seconds()
            for i, result in enumerate(self.results):
                result.seconds = sum(result.epoch_seconds) + seconds
                with clock.paused():
                    self.on_log(i, epoch, stop, result)

    def _check(self, i: int, values: list[float], epoch: int, start: int) -> None:
        """Run i's losses of minibatches start+1, start+2, ... of the epoch, each checked for divergence."""
        try:
            for offset, value in enumerate(values):
                _check_loss(value, epoch, start + offset + 1)
        except TrainingDivergedError as err:
            if self.names is None:
                raise
            raise TrainingDivergedError(f"{self.names[i]}: {err}") from None

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        if self.after_epoch is not None:
            self.after_epoch()
        for i, result in enumerate(self.results):
            result.epoch_seconds.append(seconds)
            result.seconds = sum(result.epoch_seconds)
            if self.on_epoch is not None:
                self.on_epoch(i, epoch, result)


@dataclass(frozen=True)
class TrainOptions:
    """How one run of a recipe goes, apart from the recipe: how long, from which seed, where, and on which
    step engine (`python -m mnist_lab train`'s --epochs, --seed, --device, --engine, --threads, --backward)."""

    epochs: int = 3
    seed: int = 0  # the initial weights and, unless train() is given an rng, the shuffling
    device: str | torch.device = "auto"  # "auto", "cpu" or "cuda" (choose_device), or a torch.device
    engine: str = "auto"  # one of engines.ENGINES: "auto", "fast_cpu" or "autograd"
    threads: int | None = None  # CPU threads to train with; None: the count the first steps time fastest
    backward: str | None = None  # fast_cpu's backward pass (fast_cpu.BACKWARDS); None: the one timed fastest


def train(
    xtrain: torch.Tensor,
    ltrain: torch.Tensor,
    recipe: Recipe = RECIPES["default"],
    options: TrainOptions = TrainOptions(),
    *,
    net: nn.Module | None = None,
    rng: np.random.Generator | np.random.RandomState | None = None,
    log: Callable[[str], None] | None = print,
    on_epoch: Callable[[int, TrainResult], None] | None = None,
    on_log: Callable[[int, int, TrainResult], None] | None = None,
) -> TrainResult:
    """Train LeNet-5 with `recipe`, run as `options` say: the package's fast path.

    The arithmetic is `backprop_deep`'s (same loss, optimiser and minibatches for the
    same permutations; the recipe's schedule aside), but the data sits on the device
    once and the losses stay there until they are printed every 100 minibatches.
    `options.engine` picks the steps (`engines.make_steps`): "fast_cpu" trains a LeNet on the CPU with
    `fast_cpu.FastLeNetStep` (and sets glibc's malloc to keep freed memory, process-wide), with the
    `backward` pass and `threads` CPU threads of the options, else those its first steps time fastest
    (tuning.py; at most torch.get_num_threads(), the caller's count put back afterwards);
    "autograd" uses `engines.AutogradSteps`, windows of which CUDA replays from graphs; "auto" picks
    fast_cpu for a LeNet on the CPU, where autograd's backward pass is one it times, else autograd.
    `result.engine` says what ran.

    Beside the options, what a run uses rather than what it is: `net`, trained in place (default: the
    recipe's, made after seeding torch); `rng`, the shuffling's generator (default: NumPy's, seeded);
    `log`, which prints the losses; `on_epoch(epoch, result)` after each epoch and
    `on_log(epoch, minibatch, result)` at each printed loss, both outside the timing.
    """
    check_data(xtrain, ltrain, options.epochs)
    if options.threads is not None and not is_count(options.threads, 1):
        raise InputError(f"threads must be a whole number >= 1, not {options.threads!r}")
    device = choose_device(options.device) if isinstance(options.device, str) else options.device
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed) if rng is None else rng
    net = (recipe.make_net() if net is None else net).to(device)
    x, labels = xtrain.to(device).contiguous(), ltrain.to(device)
    total = options.epochs * minibatches(len(x), recipe.batch_size)
    steps = make_steps(options.engine, net, x, labels, recipe, total, options.threads, options.backward)
    result = TrainResult(net)
    driver = Driver(steps, [result], [rng], len(x), device, log=log)
    if on_log is not None:
        driver.on_log = lambda _, epoch, minibatch, progress: on_log(epoch, minibatch, progress)
    if on_epoch is not None:
        driver.on_epoch = lambda _, epoch, progress: on_epoch(epoch, progress)
    driver.train(options.epochs)
    result.engine = steps.describe()
    return result
