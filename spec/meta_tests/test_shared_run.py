"""Q29-Q31's 3 epochs are the first 3 of Q32-Q33's 10-epoch run only where the loop's first epochs do not
depend on T (spec.harness.cells.first_epochs_differ); otherwise they train on their own, and say why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spec.harness import cells
from spec.harness import impl as implementations
from spec.harness.impl import Implementation

LENET = '''
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).view(-1, 256)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9):
    N = xtrain.size()[0]
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=rho)
    for epoch in range(T):
        order = ORDER
        for k in range((N + B - 1) // B):
            batch = order[B * k:B * (k + 1)]
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(net(xtrain[batch]), ltrain[batch]).backward()
            optimizer.step()
'''
PRINTED = {"LR": "gamma", "ORDER": "np.random.permutation(range(N))"}


def loop(**changes: str) -> str:
    source = LENET
    for name, code in {**PRINTED, **changes}.items():
        source = source.replace(name, code)
    return source


@pytest.fixture
def implementation(tmp_path: Path) -> Iterator[callable]:
    made: list[Implementation] = []

    def build(source: str) -> Implementation:
        path = tmp_path / f"student{len(made)}.py"
        path.write_text(source)
        made.append(implementations.implementation(str(path)))
        return made[-1]

    yield build
    for impl in made:
        impl.close()


@pytest.fixture
def data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(cells.PROBE_IMAGES + 50, 1, 28, 28, generator=generator)
    return {"training": (images, torch.randint(0, 10, (len(images),), generator=generator))}


def differ(impl: Implementation, data: dict) -> str | None:
    return cells.first_epochs_differ(impl, data, torch.device("cpu"), epochs=3, seed=5)


@pytest.mark.grading  # a sandboxed worker each
def test_the_printed_loop_may_share_the_longer_run(implementation, data) -> None:
    why = differ(implementation(loop()), data)
    assert why is None, f"the printed loop's first 3 epochs were judged to depend on T: {why}"


@pytest.mark.grading  # a sandboxed worker each
def test_a_step_that_depends_on_t_trains_on_its_own(implementation, data) -> None:
    why = differ(implementation(loop(LR="gamma * 3 / T")), data)
    assert why is not None, "a step size gamma * 3 / T was judged not to depend on T"
    assert "differs between T=3 and T=4" in why, f"not refused as such: {why}"


@pytest.mark.grading  # a sandboxed worker each
def test_a_loop_the_spec_cannot_see_end_its_epochs_trains_on_its_own(implementation, data) -> None:
    why = differ(implementation(loop(ORDER="torch.randperm(N)")), data)
    assert why == "backprop_deep(T=4) did not draw one np.random.permutation an epoch", f"not refused as such: {why}"


def test_the_first_epochs_of_a_run_are_what_it_had_then() -> None:
    log = [(epoch, k, 1.0 / epoch) for epoch in range(1, 11) for k in (100, 200)]
    run = cells.PrintedRun("cpu", 10, 0, log, 97.0, [(e, 90.0 + e / 2) for e in range(1, 11)])
    first = run.first_epochs(3)
    assert first is not None, "the first 3 epochs of a run that saw each epoch end were not taken"
    assert (first.epochs, first.accuracy, first.log) == (3, 91.5, log[:6]), f"taken wrongly: {first}"
    assert first.source == "the first 3 epochs of the 10-epoch run", first.source
    unseen = cells.PrintedRun("cpu", 10, 0, log, 97.0, [(10, 97.0)])
    assert unseen.first_epochs(3) is None, "a run whose epochs the spec did not see end gave its first 3"


@pytest.mark.grading  # a sandboxed worker each
def test_a_network_of_another_architecture_is_judged_by_its_own_scores(implementation, data) -> None:
    """Average pooling: the spec's LeNet cannot stand in for it, so the worker scores the test images."""
    impl = implementation(loop().replace("F.max_pool2d", "F.avg_pool2d"))
    images, labels = data["training"]
    split = {"training": (images, labels), "testing": (images[:100], labels[:100])}
    run = cells.train_as_printed(impl, split, torch.device("cpu"), epochs=2, seed=1)
    assert [epoch for epoch, _ in run.epoch_accuracy] == [1, 2], f"accuracy after epochs {run.epoch_accuracy}"
    assert 0 <= run.accuracy <= 100, f"accuracy {run.accuracy}"
