"""Q31: test accuracy after 3 epochs on the CPU.

Documented: 94.41% after `backprop_deep(xtrain, ltrain, net, T=3)`. That figure was a
lucky draw of the printed recipe (SPEC.md: 91.5-95.3% over 28 seeds, under 94% in two
runs of three), so no seed of it is asserted; Q29-Q30 hold the printed recipe to its
shape. What the spec asserts is the package's promise: its default recipe, trained for
3 epochs, reaches at least 94%, for every seed tried.
"""

from __future__ import annotations

import pytest
import torch

SEEDS = [pytest.param(seed, marks=pytest.mark.xdist_group(f"train-seed{seed}"), id=f"seed{seed}") for seed in (0, 1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_default_recipe_reaches_94_percent_in_3_epochs(default_training, seed: int) -> None:
    accuracies = default_training(torch.device("cpu"), seed, epochs=3).accuracies
    assert len(accuracies) == 3, f"{len(accuracies)} epochs evaluated, not 3"
    assert accuracies[-1] >= 94.0, f"seed {seed}: {accuracies[-1]:.2f}% after 3 epochs, promised at least 94%"
