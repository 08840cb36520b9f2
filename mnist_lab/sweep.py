"""Many seeds of one recipe: `train_many`, and the distribution of their test accuracy.

Each seed's run is exactly what `train()` does with `TrainOptions(seed=s)`: its own initial weights
(torch seeded with s) and its own shuffling (NumPy's default_rng(s)). Three engines:

- "sequential": train() for each seed, one after another, on its fastest path (on the CPU, the
  fast CPU step);
- "vmap": all seeds in one batched step. The seeds' weights are stacked (torch.func's
  stack_module_state) and one vmapped forward and backward (functional_call, grad_and_value)
  serves every seed, each on its own minibatch; SGD with momentum is torch.optim.SGD's, fused, on
  the stacked tensors. On CUDA, windows of steps replay from graphs, as train()'s do.
- "bmm": the same population, its gradients written out as batched matrix products over the
  unfolded images (batched.py) instead of vmap's grouped convolutions; the same update and graphs.

"auto" is vmap on CUDA and sequential on the CPU, where batching seeds was measured slower.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from . import batched, fast_cpu
from .engines import DeviceSteps, minibatches
from .errors import InputError
from .model import LeNet
from .recipe import RECIPES, Recipe
from .train import Driver, TrainOptions, TrainResult, check_data, choose_device, train

SWEEP_ENGINES = ("auto", "sequential", "vmap", "bmm")
MAX_SEEDS = 1024  # a sweep beyond this is a typo, not an experiment
# The assignment's single draws, by number of epochs: Q31 (CPU, 3 epochs) and Q33 (10 epochs).
PRINTED_ACCURACY = {3: 94.41, 10: 98.17}

# on_epoch(seed, epoch, result): after each epoch of each seed, outside the timing
EpochCallback = Callable[[int, int, TrainResult], None]


def parse_seeds(text: str) -> list[int]:
    """'0-31', '0,3,7' or '0-3,10-11' -> the seeds, in order; refuses empty, reversed, repeated or too many."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise InputError(f"seeds {text!r}: {part.strip()!r} is not a seed or a range like 0-31")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise InputError(f"seeds {text!r}: the range {first}-{last} runs backwards")
        if last >= 2**32:
            raise InputError(f"seeds {text!r}: {last} is over 2**32-1")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise InputError(f"seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds {text!r}: a seed appears twice")
    return seeds


def train_many(
    xtrain: torch.Tensor,
    ltrain: torch.Tensor,
    seeds: Sequence[int],
    *,
    recipe: Recipe = RECIPES["default"],
    epochs: int = 3,
    device: str | torch.device = "auto",
    engine: str = "auto",
    on_epoch: EpochCallback | None = None,
) -> list[TrainResult]:
    """One LeNet per seed, each trained as `train()` trains it with `TrainOptions(seed=s)`; their results in
    the order of `seeds`. With "vmap", `epoch_seconds` is all the seeds' time for each epoch, together."""
    if engine not in SWEEP_ENGINES:
        raise InputError(f"engine must be one of {SWEEP_ENGINES}, not {engine!r}")
    if not seeds:
        raise InputError("no seeds to train")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"a seed appears twice in {list(seeds)}")
    check_data(xtrain, ltrain, epochs)
    device = choose_device(device) if isinstance(device, str) else device
    if engine == "bmm" and not fast_cpu.supported():
        raise InputError(f"engine bmm calls aten overloads that torch {torch.__version__} lacks; use vmap")
    if engine == "auto":
        engine = "vmap" if device.type == "cuda" else "sequential"
    if engine == "sequential":
        results = []
        for seed in seeds:
            callback = None if on_epoch is None else (lambda epoch, result, seed=seed: on_epoch(seed, epoch, result))
            options = TrainOptions(epochs=epochs, seed=seed, device=device)
            run = train(xtrain, ltrain, recipe, options, log=None, on_epoch=callback)
            results.append(run)
        return results
    return _Population(xtrain, ltrain, list(seeds), recipe, epochs, device, engine).train(on_epoch)


class _Population(DeviceSteps):
    """The seeds' LeNets as one stack of weights, trained by one batched SGD step a minibatch, vmapped or
    by batched.lenet_grads (`engine`), captured in CUDA graphs on CUDA, as a single run's steps are."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        seeds: list[int],
        recipe: Recipe,
        epochs: int,
        device: torch.device,
        engine: str = "vmap",
    ) -> None:
        self.seeds, self.epochs, self.device, self.engine = seeds, epochs, device, engine
        x, labels = x.to(device).contiguous(), labels.to(device)
        self.nets = []
        for seed in seeds:  # as train() with seed s: torch seeded, then the recipe's net
            torch.manual_seed(seed)
            self.nets.append(recipe.make_net().to(device))
        stacked, _ = stack_module_state(self.nets)
        self.names = list(stacked)
        total = epochs * minibatches(len(x), recipe.batch_size)
        super().__init__(x, labels, recipe, total, [stacked[name].detach() for name in self.names], (len(seeds),))
        base = LeNet().to("meta")

        def loss(params: tuple[torch.Tensor, ...], x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(base, dict(zip(self.names, params, strict=True)), (x,)), labels)

        self.step_all = batched.lenet_grads if engine == "bmm" else vmap(grad_and_value(loss))
        if device.type == "cuda":
            self.capture()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": self.engine, "seeds": len(self.seeds)}

    def _step(self, idx: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """idx: (seeds, minibatch), each seed's own images; the seeds' losses."""
        grads, losses = self.step_all(tuple(self.params), self.x[idx], self.labels[idx])
        self._update(grads, rate)
        return losses

    def sync_nets(self) -> None:
        """Copy the stacked weights into each seed's own LeNet."""
        with torch.no_grad():
            for i, net in enumerate(self.nets):
                for p, stacked in zip(net.parameters(), self.params, strict=True):
                    p.copy_(stacked[i])

    def train(self, on_epoch: EpochCallback | None) -> list[TrainResult]:
        """train()'s epochs (`Driver`) for all the seeds at once: each seed's own shuffling, its losses
        checked and logged in its own result, the stacked weights copied into its LeNet after each epoch."""
        results = [TrainResult(net) for net in self.nets]
        driver = Driver(
            self, results, [np.random.default_rng(seed) for seed in self.seeds], len(self.x), self.device,
            names=[f"seed {seed}" for seed in self.seeds], after_epoch=self.sync_nets,
        )  # fmt: skip
        if on_epoch is not None:
            driver.on_epoch = lambda i, epoch, result: on_epoch(self.seeds[i], epoch, result)
        driver.train(self.epochs)
        for result in results:
            result.engine = self.describe()
        return results


@dataclass(frozen=True)
class Summary:
    runs: int
    min: float
    median: float
    mean: float
    max: float
    printed: float | None  # the assignment's figure for this many epochs, if it printed one
    at_or_above_printed: float | None  # the share of runs that reached it

    @classmethod
    def of(cls, accuracies: Sequence[float], epochs: int) -> Summary:
        printed = PRINTED_ACCURACY.get(epochs)
        share = None if printed is None else sum(a >= printed for a in accuracies) / len(accuracies)
        return cls(
            len(accuracies), min(accuracies), statistics.median(accuracies), statistics.mean(accuracies),
            max(accuracies), printed, share,
        )  # fmt: skip

    def line(self) -> str:
        text = (
            f"{self.runs} seeds: test accuracy min {self.min:.2f}%, median {self.median:.2f}%, "
            f"mean {self.mean:.2f}%, max {self.max:.2f}%"
        )
        if self.printed is not None and self.at_or_above_printed is not None:
            text += f"; {self.at_or_above_printed:.0%} at or above the printed {self.printed}%"
        return text
