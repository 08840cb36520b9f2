"""Q29-Q30: `backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9)`.

Documented (cells [41]-[42]): T epochs of minibatch SGD with learning rate gamma and momentum rho on the
cross-entropy; each epoch draws a fresh permutation of the training set and cuts it into ceil(N / B)
minibatches (600 for MNIST; the last one short when B does not divide N); every 100 minibatches it
prints `[epoch, k] loss: x.xxx`, the mean loss of those 100 (6 lines an epoch). The printed 3-epoch
run starts at 2.301 (about ln 10 = 2.303, chance over 10 classes) and falls to 0.209.

Each claim is checked apart, on a few real images whose corner pixel (background in every MNIST digit)
is set to encode the image's index, through a net that records what each minibatch holds:
- the optimiser: the weights after training equal those of torch.optim.SGD(lr=gamma, momentum=rho) on
  the cross-entropy, replayed over the same minibatches from the same start (with the printed
  defaults, and with other B, gamma and rho);
- the minibatches: counts, sizes, every image once per epoch, a fresh permutation every epoch;
- the printing: every 100 minibatches, the mean of those 100 losses.
The full run (T=3 on all of MNIST, `printed_run`) keeps the printed log's shape, for any seed: near
ln 10 at first, lower at each epoch's end, and at the end under 0.5 and under a quarter of the start.
Over the 24 calibration seeds of test_q31 the first printed loss was 2.298-2.305 and the last after
3 epochs 0.169-0.282 (2.301 and 0.209 printed).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spec.harness.cells import as_tensors, normalize_as_printed, parse_log
from spec.harness.impl import Implementation
from spec.harness.measure import Measure
from spec.sandbox.reference import MARK, Recorder

pytestmark = [pytest.mark.question("Q29-Q30"), pytest.mark.xdist_group("backprop_deep")]


def marked(mnist_columns, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n training images, their corner pixel encoding their index, and their labels: never test
    labels, which a notebook's worker must not see."""
    columns, labels = mnist_columns["training"]
    x, labels = as_tensors(columns[:, :n], labels[:n], normalize_as_printed)
    x[:, 0, 0, 0] = -1 + torch.arange(n, dtype=torch.float32) / MARK
    return x.to(device), labels.to(device)



def train(
    impl: Implementation, x: torch.Tensor, labels: torch.Tensor, device: torch.device, **kwargs
) -> tuple[Recorder, nn.Module, str]:
    """backprop_deep on a recording net; returns the net, its start and what backprop_deep printed."""
    net = Recorder(labels).to(device)
    start = copy.deepcopy(net.net)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        impl.backprop_deep(x, labels, net, **kwargs)
    return net, start, printed.getvalue()


def replay(start: nn.Module, x: torch.Tensor, labels: torch.Tensor, batches: list[list[int]], gamma: float,
           rho: float) -> nn.Module:  # fmt: skip
    """torch.optim.SGD on the cross-entropy over the same minibatches, from the same start."""
    net = copy.deepcopy(start)
    optimizer = torch.optim.SGD(net.parameters(), lr=gamma, momentum=rho)
    for batch in batches:
        index = torch.tensor(batch, device=x.device)
        optimizer.zero_grad()
        F.cross_entropy(net(x[index]), labels[index]).backward()
        optimizer.step()
    return net


def assert_trained_as(net: Recorder, start: nn.Module, reference: nn.Module, what: str) -> None:
    """Each parameter moved as the reference's did, to 1% of the move (float32 rounding is far less)."""
    for (name, got), before, want in zip(
        net.net.named_parameters(), start.parameters(), reference.parameters(), strict=True
    ):
        moved, expected = (got.detach() - before.detach()).double(), (want.detach() - before.detach()).double()
        error = float(torch.linalg.vector_norm(moved - expected) / torch.linalg.vector_norm(expected).clamp_min(1e-12))
        assert error <= 1e-2, (
            f"{name} moved {error:.0%} away from {what} (|change| {float(torch.linalg.vector_norm(moved)):.3g}, "
            f"expected {float(torch.linalg.vector_norm(expected)):.3g})"
        )


def test_defaults_are_the_printed_recipe(impl: Implementation, device: torch.device, mnist_columns) -> None:
    """backprop_deep(xtrain, ltrain, net, T) alone: B=100, SGD with lr 0.001 and momentum 0.9."""
    x, labels = marked(mnist_columns, 300, device)
    net, start, _ = train(impl, x, labels, device, T=1)
    sizes = [len(b) for b in net.batches]
    shown = f"{sizes[:6]}".removesuffix("]") + (", ...]" if len(sizes) > 6 else "]")
    assert sizes == [100, 100, 100], (
        f"T=1 on 300 images made {len(sizes)} minibatches of sizes {shown}, not 3 of 100: the default B is not 100, "
        "or the loop does not make ceil(N/B) minibatches of B"
    )
    reference = replay(start, x, labels, net.batches, gamma=0.001, rho=0.9)
    assert_trained_as(net, start, reference, "SGD with the default lr 0.001 and momentum 0.9 on the cross-entropy")


def test_sgd_with_momentum_on_the_cross_entropy(impl: Implementation, device: torch.device, mnist_columns) -> None:
    """Other B, gamma and rho than the defaults, so each is seen to be used: 2 epochs of 2 minibatches."""
    x, labels = marked(mnist_columns, 100, device)
    gamma, rho = 0.05, 0.5
    net, start, _ = train(impl, x, labels, device, T=2, B=50, gamma=gamma, rho=rho)
    assert len(net.batches) == 4, f"T=2, B=50 on 100 images made {len(net.batches)} minibatches, not 4"
    reference = replay(start, x, labels, net.batches, gamma=gamma, rho=rho)
    assert_trained_as(net, start, reference, f"SGD with lr {gamma} and momentum {rho} on the cross-entropy")


def _images(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


@pytest.mark.parametrize(("n", "b"), [(250, 100), (300, 100), (7, 3)])
def test_each_epoch_uses_every_image_once_in_ceil_n_over_b_minibatches(
    impl: Implementation, device: torch.device, mnist_columns, n: int, b: int
) -> None:
    x, labels = marked(mnist_columns, n, device)
    epochs, per_epoch = 3, math.ceil(n / b)
    net, _, _ = train(impl, x, labels, device, T=epochs, B=b)
    count = len(net.batches)
    dropped = count == epochs * (n // b) != epochs * per_epoch
    hint = " (the last, short minibatch is dropped: NB = N // B)" if dropped else ""
    assert count == epochs * per_epoch, f"{count} minibatches in {epochs} epochs, not {epochs} x ceil({n}/{b}){hint}"
    sizes = [b] * (per_epoch - 1) + [n - b * (per_epoch - 1)]
    for e in range(epochs):
        batches = net.batches[e * per_epoch : (e + 1) * per_epoch]
        assert [len(batch) for batch in batches] == sizes, (
            f"epoch {e + 1}: minibatch sizes {[len(x) for x in batches]}, not {sizes}: ceil(N/B) minibatches of B, "
            "only the last one short"
        )
        used = sorted(_images(batches))
        assert used == list(range(n)), (
            f"epoch {e + 1} does not use each of the {n} images once: {len(set(used))} distinct, "
            f"{len(used) - len(set(used))} repeated"
        )


def test_each_epoch_draws_a_fresh_permutation_of_the_images(
    impl: Implementation, device: torch.device, mnist_columns
) -> None:
    """300 images in minibatches of 100: which images share a minibatch changes from epoch to epoch (two
    fair draws put the same 100 together with a chance under 1e-80)."""
    n, b, epochs = 300, 100, 3
    x, labels = marked(mnist_columns, n, device)
    net, _, _ = train(impl, x, labels, device, T=epochs, B=b)
    per_epoch = len(net.batches) // epochs
    epoch_batches = [net.batches[e * per_epoch : (e + 1) * per_epoch] for e in range(epochs)]
    for e, batches in enumerate(epoch_batches, 1):
        assert _images(batches) != list(range(n)), f"epoch {e} goes through the images in order: no shuffling"
    for e, (before, after) in enumerate(itertools.pairwise(epoch_batches), 2):
        assert _images(after) != _images(before), (
            f"epochs {e - 1} and {e} take the images in the same order: the permutation is drawn once, not every epoch"
        )
        assert {frozenset(batch) for batch in after} != {frozenset(batch) for batch in before}, (
            f"epochs {e - 1} and {e} put the same images together in every minibatch, only in another order: "
            f"the minibatches are fixed blocks of {b} images; each epoch must permute the images themselves"
        )


def test_prints_the_mean_loss_of_every_100_minibatches(impl: Implementation, mnist_columns) -> None:
    """B=1 on 200 images: 200 minibatches, so a `[1, 100]` and a `[1, 200]` line, each the mean of the
    100 losses before it."""
    device = torch.device("cpu")
    x, labels = marked(mnist_columns, 200, device)
    net, _, printed = train(impl, x, labels, device, T=1, B=1)
    rows = parse_log(printed)
    shown = [line for line in printed.splitlines() if line.strip()][:3]
    assert rows, f"backprop_deep printed no `[epoch, k] loss: x.xxx` line; its first lines: {shown}"
    steps = [(e, k) for e, k, _ in rows]
    expected_steps = [(1, 100), (1, 200)]
    assert steps == expected_steps, f"printed at (epoch, k) {steps}, expected every 100 minibatches: {expected_steps}"
    assert len(net.losses) == 200, f"{len(net.losses)} minibatches trained, not 200"
    for row, (e, k, value) in enumerate(rows):
        chunk = net.losses[100 * row : 100 * (row + 1)]
        mean = sum(chunk) / len(chunk)
        assert abs(value - mean) <= 5e-4 + 1e-5 * abs(mean), (
            f"printed loss {value} at [{e}, {k}], but the mean loss of minibatches {k - 99}-{k} is {mean:.4f}"
        )


@pytest.mark.training
def test_the_printed_run_keeps_the_printed_shape(device: torch.device, printed_run, measure: Measure) -> None:
    run = printed_run(device, 3)
    measure("printed loss: first, last of 3 epochs", [run.log[0][2], run.log[-1][2]] if run.log else [], device)
    measure.series("loss", device, recipe="assignment", epochs=3, points=run.log)
    steps = [(e, k) for e, k, _ in run.log]
    assert steps == [(e, k) for e in (1, 2, 3) for k in range(100, 601, 100)], (
        f"printed (epoch, k) {steps}, expected [1, 100] to [3, 600] every 100 minibatches"
    )
    losses = [loss for _, _, loss in run.log]
    assert abs(losses[0] - math.log(10)) < 0.1, f"first printed loss {losses[0]}, not near ln 10 = 2.303"
    epoch_ends = losses[5::6]
    assert all(a > b for a, b in itertools.pairwise(epoch_ends)), f"the loss at epoch ends does not fall: {epoch_ends}"
    assert losses[-1] < min(0.5, losses[0] / 4), f"after 3 epochs the printed loss is still {losses[-1]}"
