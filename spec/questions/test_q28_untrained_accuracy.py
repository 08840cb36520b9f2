"""Q28: an untrained LeNet is at chance on the test set.

Documented: `100 * (ltest == lpred).float().mean()` of a fresh net, with lpred the
argmax of its scores: 11.92% (CPU) and 9.69% (GPU), the chance level of 10 classes.
That cell is top-level code: the spec computes it (`spec.harness.cells.accuracy`).
The exact figure depends on the random initial weights; over 200 seeds it ranged
3.4% to 16.0%, so each seed is held to [0, 25] and their mean to 10 +- 4.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from spec.harness.cells import accuracy, seed_everything
from spec.harness.impl import Implementation
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q28")

SEEDS = range(8)


def test_untrained_net_is_at_chance(impl: Implementation, device: torch.device, mnist, measure: Measure) -> None:
    xtest, ltest = mnist["testing"]
    accuracies = []
    for seed in SEEDS:
        seed_everything(seed)
        accuracies.append(accuracy(impl.LeNet().to(device), xtest, ltest, device))
    assert all(0 <= a <= 25 for a in accuracies), f"untrained accuracies {accuracies}: not near chance (10%)"
    mean = statistics.mean(accuracies)
    measure(f"untrained accuracy, mean of {len(accuracies)} seeds", mean, device, unit="%")
    assert 6 <= mean <= 14, f"mean untrained accuracy {mean:.2f}% over {len(SEEDS)} seeds is not near 10%"
