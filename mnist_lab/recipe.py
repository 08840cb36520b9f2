"""Training recipes: initialisation, optimiser settings, batch size and learning-rate schedule.

A module of its own so that the step engines (engines.py) and the loops that drive them
(train.py, sweep.py) all read a recipe without importing one another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError
from .model import LeNet, he_init_

INITS = ("pytorch", "he")  # the layers' own default, or He (kaiming-normal) with zero biases
SCHEDULES = ("constant", "linear")  # linear: from lr down to 0 over the run


def is_count(value: object, least: int) -> bool:
    """Whether `value` is a whole number (an int, not a bool) of at least `least`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


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
    # to 0: docs/differences.md says why.
    "default": Recipe("default", init="he", lr=0.05, momentum=0.9, batch_size=100, schedule="linear", warmup=100),
}
