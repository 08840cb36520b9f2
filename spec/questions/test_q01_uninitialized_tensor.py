"""Q1: an uninitialised 5x3 tensor.

The assignment runs `x = torch.Tensor(5, 3)` and prints::

    <class 'torch.Tensor'>
    torch.float32

"x was randomly initialized. x is of type torch.Tensor and its data is of type torch.float32"

The printed values are whatever memory held (1.3563e-19, 1.8888e+31, ...), so only type, shape and dtype
are asserted. The legacy constructor `torch.Tensor(...)` builds CPU tensors only; on another device the same
uninitialised allocation is `torch.empty(5, 3, device=device)`, or the CPU tensor moved with `.to(device)`.
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q1")


def test_legacy_constructor_takes_sizes_not_data(measure: Measure) -> None:
    x = torch.Tensor(5, 3)
    measure("torch.Tensor(5, 3)", f"{type(x).__name__} {tuple(x.shape)} {x.dtype}")
    assert type(x) is torch.Tensor, f"torch.Tensor(5, 3) is a {type(x)}, not a torch.Tensor"
    assert x.shape == (5, 3), f"torch.Tensor(5, 3) has shape {tuple(x.shape)}: the ints are sizes, not data"
    assert x.dtype == torch.float32, f"torch.Tensor(5, 3) has dtype {x.dtype}, not the documented torch.float32"
    assert str(type(x)) == "<class 'torch.Tensor'>", f"type prints as {type(x)}"
    assert str(x.dtype) == "torch.float32", f"dtype prints as {x.dtype}"


def test_uninitialised_5x3_on_device(device: torch.device) -> None:
    for how, x in (
        ("torch.Tensor(5, 3).to(device)", torch.Tensor(5, 3).to(device)),
        ("torch.empty(5, 3, device=device)", torch.empty(5, 3, device=device)),
    ):
        assert type(x) is torch.Tensor, f"{how} is a {type(x)}, not a torch.Tensor"
        assert x.shape == (5, 3), f"{how} has shape {tuple(x.shape)}, not (5, 3)"
        assert x.dtype == torch.float32, f"{how} has dtype {x.dtype}, not torch.float32"
        assert x.device.type == device.type, f"{how} is on {x.device}, not on {device}"
        assert not x.requires_grad, f"{how} requires grad"
