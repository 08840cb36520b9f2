"""Q4: tensors from the printed lists.

The assignment builds `x = torch.Tensor([[-0.1859, 1.3970, 0.5236], ...])` and `y = torch.Tensor([[0.4838,
0.5822, 0.2755], ...])` (the values in `spec.harness.printed.X` and `Y`), prints `x.shape, y.shape` as
`torch.Size([5, 3]) torch.Size([5, 3])` and says "Shape of x is (5,3). Shape of y is (5,3)."
Later questions (Q5-Q8) build on these two tensors.
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.helpers import assert_printed, printed
from spec.harness.measure import Measure
from spec.harness.printed import X, Y

pytestmark = pytest.mark.question("Q4")


def test_legacy_constructor_from_lists_is_float32_5x3(measure: Measure) -> None:
    x, y = torch.Tensor(X), torch.Tensor(Y)
    measure("x[0]", [round(v, 4) for v in x[0].tolist()])
    assert str(x.shape) + " " + str(y.shape) == "torch.Size([5, 3]) torch.Size([5, 3])", (
        f"shapes print as {x.shape} {y.shape}"
    )
    assert x.dtype == y.dtype == torch.float32, f"torch.Tensor(list) gives {x.dtype}, {y.dtype}, not torch.float32"
    assert torch.equal(x, printed(X)), "torch.Tensor(X) differs from the float32 tensor of the printed values"
    assert torch.equal(y, printed(Y)), "torch.Tensor(Y) differs from the float32 tensor of the printed values"


def test_tensors_from_lists_on_device(device: torch.device) -> None:
    x, y = printed(X, device), printed(Y, device)
    assert x.shape == y.shape == (5, 3), f"shapes are {tuple(x.shape)}, {tuple(y.shape)}, not (5, 3)"
    assert x.device.type == y.device.type == device.type, f"tensors are on {x.device}, {y.device}, not {device}"
    assert_printed(x, X, "x")
    assert_printed(y, Y, "y")
    assert x[1, 0].item() == torch.tensor(2.3854, dtype=torch.float32).item(), "x[1, 0] is not float32(2.3854)"
    assert y[1, 2].item() < 0, "y[1, 2] = -0.6680 lost its sign"
