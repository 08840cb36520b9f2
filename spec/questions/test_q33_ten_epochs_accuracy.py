"""Q33: test accuracy after 10 epochs.

Documented (cell [51]): 98.17% on the test set after the 10 epochs of Q32 on the GPU; the GPU gives no
better accuracy per epoch than the CPU, only faster training (a benchmark, not a test). The spec
computes the accuracy of Q32's run (`printed_run`) on each device as the cell does.

98.17% was a good draw of the printed recipe, so the bound comes from the recipe's spread. With the
calibration of test_q31 (`python -m spec.harness.calibrate --seeds 0-23 --epochs 10 --threads 1`, CPU,
torch 2.13.0), 10 epochs gave 97.28% to 97.96%, mean 97.72%: no seed of 24 reached 98.17% (GPU reruns of
the printed recipe measured 97.77-98.07%). The bound, 96.5%, sits 0.8 points under the lowest: a correct
loop passes on every device, for every seed.
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.measure import Measure
from spec.harness.text import accuracy_key

pytestmark = [pytest.mark.question("Q33"), pytest.mark.xdist_group("backprop_deep"), pytest.mark.training]

LOWEST = 96.5  # percent


def test_ten_epochs_of_the_printed_recipe_reach_the_calibrated_accuracy(
    printed_run, device: torch.device, measure: Measure
) -> None:
    run = printed_run(device, 10)
    measure("test accuracy after 10 epochs", run.accuracy, device, unit="%", key=accuracy_key(10))
    measure.series("accuracy", device, recipe="assignment", epochs=10, points=run.epoch_accuracy)
    assert run.accuracy >= LOWEST, (
        f"{run.accuracy:.2f}% on the test set after backprop_deep(T=10) on {device.type} (seed {run.seed}): "
        f"the printed recipe reaches at least {LOWEST}% for every seed (98.17% printed)"
    )
