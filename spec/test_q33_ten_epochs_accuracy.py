"""Q33: test accuracy after 10 epochs, and GPU against CPU.

Documented: 98.17% on the test set after 10 epochs on the GPU; the GPU gives no better
accuracy per epoch than the CPU, but is much faster (a benchmark, not a test). The
printed recipe landed under 98% in a rerun (SPEC.md), so the spec asserts the
package's default recipe: at least 98% after 10 epochs for every seed tried, on each
device, and GPU and CPU within half a percentage point for the same seed (the GPU's
kernels round differently, so the runs part ways, but not by more than that).
"""

from __future__ import annotations

import pytest
import torch

SEEDS = [pytest.param(seed, marks=pytest.mark.xdist_group(f"train-seed{seed}"), id=f"seed{seed}") for seed in (0, 1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_default_recipe_reaches_98_percent_in_10_epochs(default_training, device: torch.device, seed: int) -> None:
    accuracies = default_training(device, seed, epochs=10).accuracies
    assert len(accuracies) == 10, f"{len(accuracies)} epochs evaluated, not 10"
    assert accuracies[-1] >= 98.0, f"seed {seed} on {device}: {accuracies[-1]:.2f}% after 10 epochs, promised 98%"


@pytest.mark.cuda
@pytest.mark.parametrize("seed", SEEDS)
def test_gpu_accuracy_matches_cpu(default_training, seed: int) -> None:
    gpu = default_training(torch.device("cuda"), seed, epochs=10).accuracies[-1]
    cpu = default_training(torch.device("cpu"), seed, epochs=10).accuracies[-1]
    assert abs(gpu - cpu) <= 0.5, f"seed {seed}: GPU {gpu:.2f}% against CPU {cpu:.2f}% after 10 epochs"
