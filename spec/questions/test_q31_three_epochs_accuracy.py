"""Q31: test accuracy after 3 epochs on the CPU.

Documented (cells [42]-[44]): `backprop_deep(xtrain, ltrain, net, T=3)` on a fresh `LeNet()`, then
`100 * (ltest == lpred_fin).float().mean()` prints 94.41%. The spec trains the implementation's own
LeNet with its own backprop_deep that way (`printed_run`, seeded with --train-seed) and computes the
accuracy as the cell does. Where the loop's first epochs do not depend on T, as the spec checks on 300
images, those 3 epochs are the first 3 of Q32's 10-epoch run, evaluated after epoch 3.

94.41% was a lucky draw of the printed recipe, so the bound comes from the recipe's spread instead.
Calibration, seeds 0-23 of the spec's own run (`spec/harness/calibrate.py`):

    python -m spec.harness.calibrate --seeds 0-23 --epochs 10 --threads 1

with mnist_lab's backprop_deep (the printed loop) on the CPU, torch 2.13.0: after 3 epochs 91.51% to
95.35%, mean 93.53%; 4 seeds of 24 reached the printed 94.41%. The bound, 88%, sits 3.5 points under
the lowest: a correct loop passes for every seed, while one that trains far worse fails (without
momentum, spec/meta_tests/broken/no_momentum.ipynb is at 10.81% after 3 epochs: the loss never leaves ln 10).
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.measure import Measure
from spec.harness.text import accuracy_key

pytestmark = [pytest.mark.question("Q31"), pytest.mark.xdist_group("backprop_deep"), pytest.mark.training]

LOWEST = 88.0  # percent


def test_three_epochs_of_the_printed_recipe_reach_the_calibrated_accuracy(printed_run, measure: Measure) -> None:
    run = printed_run(torch.device("cpu"), 3)
    measure("test accuracy after 3 epochs", run.accuracy, unit="%", key=accuracy_key(3))
    measure("the 3 epochs trained", run.source)
    measure.series("accuracy", recipe="assignment", epochs=3, points=run.epoch_accuracy)
    assert run.accuracy >= LOWEST, (
        f"{run.accuracy:.2f}% on the test set after backprop_deep(T=3) (seed {run.seed}): the printed recipe "
        f"reaches at least {LOWEST}% for every seed (94.41% printed)"
    )
