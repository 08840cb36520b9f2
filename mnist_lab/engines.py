"""Step engines: the SGD steps of a run, or of a population of runs, that train()'s driver runs a
window of minibatches at a time.

`Steps` is the interface; `make_steps` picks an engine for one run: `FastCPUSteps` (the fast CPU
step of fast_cpu.py, its backward pass and threads timed on the run's first steps, tuning.py) or
`AutogradSteps` (autograd, windows of it replayed from CUDA graphs). The
sweep's population of seeds is a `DeviceSteps` too (sweep.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import fast_cpu, tuning
from .errors import InputError
from .fast_cpu import BACKWARDS, FastLeNetStep, is_lenet, thread_counts, tune_malloc
from .recipe import Recipe

LOG_EVERY = 100  # minibatches between printed losses, as in the assignment
# Minibatches one CUDA graph replays: a printed window. (10 replayed as fast and captured
# faster, but two captures failed with it on the GPU runner: docs/benchmarks.md has the figures.)
GRAPH_STEPS = LOG_EVERY
ENGINES = ("auto", "autograd", "fast_cpu")


def windows(batches: int) -> Iterator[tuple[int, int]]:
    """An epoch's windows of minibatches, [start, stop): LOG_EVERY each, as train() prints its
    losses, the last cut short at `batches`."""
    for start in range(0, batches, LOG_EVERY):
        yield start, min(start + LOG_EVERY, batches)


def minibatches(n: int, batch_size: int) -> int:
    """How many minibatches of at most `batch_size` cover `n` images: ceil(n / batch_size)."""
    return -(-n // batch_size)


class Steps(Protocol):
    """An engine: the SGD steps of one run, or of a population of runs, which the driver drives.

    Each epoch the driver calls `new_epoch(order)` with that epoch's permutation of the images,
    then `run(start, stop)` for consecutive `windows` of minibatches, in order: minibatch k is
    the images order[k * batch_size : (k + 1) * batch_size], and its mean loss lands in
    `losses[k]`, a tensor on the device that the driver reads only after the window. A
    population of S runs has a lead dimension: `order` is (S, images), `losses` (S, minibatches).
    """

    losses: torch.Tensor
    threads: int | None  # the CPU thread count it trains with (at most); None: as the caller set it

    def new_epoch(self, order: torch.Tensor) -> None: ...

    def run(self, start: int, stop: int) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Its name and what it chose (the backward pass, the threads), for the run's JSON."""
        ...


class FastCPUSteps:
    """`fast_cpu.FastLeNetStep` over one epoch's permutation, the learning rate set each step, with the
    backward pass and thread count asked for, else those a `tuning.Tuner` times fastest on the run's first
    steps (`threads` is the most it uses: the driver sets it, and puts the caller's back afterwards)."""

    def __init__(
        self,
        net: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        recipe: Recipe,
        total: int,
        threads: int | None,
        backwards: tuple[str, ...],
    ) -> None:
        tune_malloc()
        self.x, self.labels, self.recipe, self.total = x, labels, recipe, total
        counts = (threads,) if threads is not None else tuple(thread_counts(torch.get_num_threads()))
        self.threads: int | None = counts[0]
        self.shape = (recipe.batch_size, tuple(x.shape[1:]), x.dtype)
        self.tuner = tuning.tuner(backwards, counts, self.shape)
        self.fast = FastLeNetStep(net, recipe.lr, recipe.momentum, backwards[0])
        self.losses = torch.zeros(minibatches(len(x), recipe.batch_size))
        self.order = torch.empty(0, dtype=torch.long)
        self.t = 0  # steps taken

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order = order

    def run(self, start: int, stop: int) -> None:
        size = self.recipe.batch_size
        for k in range(start, stop):
            choice, timing = self.tuner.next()  # a timing while it probes
            self.fast.backward = choice.backward
            if torch.get_num_threads() != choice.threads:
                torch.set_num_threads(choice.threads)
            began = time.perf_counter()
            idx = self.order[k * size : (k + 1) * size]
            self.fast.lr = float(self.recipe.lr_at(self.t, self.total))
            self.losses[k] = self.fast(self.x.index_select(0, idx), self.labels.index_select(0, idx))
            if timing is not None:
                self.tuner.record(timing, time.perf_counter() - began)
            self.t += 1
        tuning.keep(self.tuner, self.shape)

    def describe(self) -> dict[str, Any]:
        return {"engine": "fast_cpu", **self.tuner.describe()}


class DeviceSteps:
    """SGD steps with all their state on the device, so that CUDA can replay a window of them from a graph.

    Minibatch k of an epoch takes its images from `order`, its learning rate from `rates` (the
    recipe's schedule for every step of the run, computed once) and writes its loss into
    `losses`. A graph replays up to `graph_steps` full minibatches with every address fixed,
    so a replay copies its part of `order` and `rates` into window buffers first and the
    losses out afterwards: three copies for up to `graph_steps` steps. Minibatches no graph
    covers (a short last one, or all of them where there is no graph) run eagerly.

    `lead` is () for one run; the sweep's population of S runs has lead (S,), one order and
    one row of losses per run. The update is torch.optim.SGD's, fused, with the rate a tensor.
    Subclasses say what a step is (`_step`).
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
        self.capture_error: str | None = None  # why no graph was kept, where a capture failed

    def new_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.epoch_start += self.batches

    def describe(self) -> dict[str, Any]:
        threads = (self.threads or torch.get_num_threads()) if self.x.device.type == "cpu" else None
        described = {"engine": "autograd", "threads": threads, "cuda_graphs": sorted(self.graphs)}
        if self.capture_error is not None:
            described["cuda_graph_error"] = self.capture_error
        return described

    def run(self, start: int, stop: int) -> None:
        start = self._replay(start, stop)
        size = self.recipe.batch_size
        for k in range(start, stop):
            idx = self.order.narrow(-1, k * size, min(size, self.order.shape[-1] - k * size))
            self.losses.select(-1, k).copy_(self._step(idx, self.rates[self.epoch_start + k]))

    def _replay(self, start: int, stop: int) -> int:
        """Replay graphs over the full minibatches from `start`, `graph_steps` at most at a time;
        the first minibatch left to run eagerly."""
        size = self.recipe.batch_size
        while start < stop:
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
        return start

    def spans(self) -> set[int]:
        """The numbers of full minibatches run() replays at once, over the driver's windows of LOG_EVERY."""
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
        (`spans()`), leaving no trace in the run. Where a capture fails (an error from CUDA, cuBLAS
        or the step), no graph is kept and run() runs every step eagerly: `capture_error` says why.

        The warm-up the CUDA-graph docs ask for (steps on a side stream) trains on minibatch 0
        of the current order; afterwards the weights, momentum, losses, window buffers and the
        CUDA generator are put back as they were. A data set smaller than one minibatch has no
        full minibatch, and no graph."""
        spans = self.spans()
        if not spans:
            return
        saved = [s.detach().clone() for s in self._state()]
        rng = torch.cuda.get_rng_state(self.x.device)
        stream = torch.cuda.current_stream(self.x.device)
        try:
            self._warm_up()
            pool = torch.cuda.graph_pool_handle()
            for span in sorted(spans, reverse=True):
                self.graphs[span] = self._record(span, pool)
        except RuntimeError as err:  # torch.AcceleratorError too: the run goes on eagerly, and says why
            self.graphs.clear()
            self.capture_error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
            torch.cuda.set_stream(stream)  # a failed capture_end leaves torch.cuda.graph's capture stream current
            torch.cuda.synchronize(self.x.device)  # where CUDA itself is broken, this raises: nothing to fall back to
        with torch.no_grad():
            for state, value in zip(self._state(), saved, strict=True):
                state.copy_(value)
        torch.cuda.set_rng_state(rng, self.x.device)

    def _warm_up(self) -> None:
        """Three steps on minibatch 0, on a side stream: what the CUDA-graph docs ask for before a capture."""
        device = self.x.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(self.order[..., : self.recipe.batch_size], self.rates[0])
        torch.cuda.current_stream(device).wait_stream(side)

    def _record(self, span: int, pool: tuple[int, int]) -> torch.cuda.CUDAGraph:
        """A graph of `span` steps over the window buffers, in the graphs' shared memory pool."""
        size = self.recipe.batch_size
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            for j in range(span):
                idx = self.window_order.narrow(-1, j * size, size)
                self.window_losses.select(-1, j).copy_(self._step(idx, self.window_rates[j]))
        return graph


class AutogradSteps(DeviceSteps):
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


def make_steps(
    engine: str,
    net: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    total: int,
    threads: int | None,
    backward: str | None = None,
) -> Steps:
    """The engine `engine` names, for one run of `total` steps. "auto" is fast_cpu for a LeNet on the
    CPU where this PyTorch has the overloads it calls (`fast_cpu.supported()`), its backward pass timed
    among all of fast_cpu.BACKWARDS, autograd's too; "fast_cpu" times the two written by hand. Elsewhere
    autograd, captured in a graph on CUDA. `backward` fixes fast_cpu's backward pass."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if backward is not None and backward not in BACKWARDS:
        raise InputError(f"backward must be one of {BACKWARDS}, not {backward!r}")
    fast = x.device.type == "cpu" and is_lenet(net) and fast_cpu.supported()
    if engine == "fast_cpu" or (engine == "auto" and fast):
        hand = tuple(b for b in BACKWARDS if b != "autograd")
        backwards = (backward,) if backward is not None else BACKWARDS if engine == "auto" else hand
        return FastCPUSteps(net, x, labels, recipe, total, threads, backwards)
    if backward is not None:
        raise InputError(f"backward {backward!r} is fast_cpu's; {engine!r} here trains with autograd")
    steps = AutogradSteps(net, x, labels, recipe, total)
    if x.device.type == "cpu":
        steps.threads = threads
    if x.device.type == "cuda":
        steps.capture()
    return steps
