"""How long a graded training test may take: fitted to this machine, not a fixed half hour.

Q31-Q33 train the student's LeNet for up to 10 epochs. The budget is what 10 epochs of the printed
loop take here, measured in the run on the spec's own LeNet, times MARGIN, plus SLACK for the
evaluations and the worker; never more than the fixed ceiling. A loop that never ends then costs
minutes on a fast machine and on a slow one alike, and a correct loop, however plainly written, fits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spec.sandbox.reference import PrintedLeNet

EPOCHS = 10  # the longest run a graded test makes (Q33)
MARGIN = 5  # a plain student loop against the spec's own
SLACK = 120.0  # seconds: the worker's start, the data's transfer, the evaluations
MINIBATCHES = 600  # an epoch of MNIST in minibatches of 100


@dataclass(frozen=True)
class Budget:
    epoch_seconds: float  # one epoch of the printed loop here, measured
    ceiling: float

    @property
    def seconds(self) -> float:
        return min(self.ceiling, EPOCHS * self.epoch_seconds * MARGIN + SLACK)

    def line(self) -> str:
        return (
            f"training budget {self.seconds:.0f} s a test: {EPOCHS} epochs of the printed loop at "
            f"{self.epoch_seconds:.1f} s an epoch here, x{MARGIN}, + {SLACK:.0f} s (at most {self.ceiling:.0f} s)"
        )


def measure(ceiling: float, steps: int = 20, warmup: int = 3) -> Budget:
    """Time `steps` minibatches of 100 of the printed recipe (SGD with momentum on the cross-entropy) on
    the spec's LeNet, after `warmup`, and scale them to an epoch. Its draws come from a generator of its own."""
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = PrintedLeNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    images = torch.randn(100, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (100,), generator=generator)
    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
    return Budget((time.perf_counter() - start) / steps * MINIBATCHES, ceiling)
