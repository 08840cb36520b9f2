"""Q7: slicing across the stacked axis.

The assignment prints `eles = z[:, 4, 2]` (z = stack((x, y)) of Q5) as `tensor([0.1092, 1.3210])` and its shape as
`torch.Size([2])`: "the 1st returned element corresponds to the element at the 5th row and 3rd column of the
tensor x, and the 2nd ... of the tensor y."
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY, assert_printed, printed
from spec.harness.measure import Measure
from spec.harness.printed import Z_COLUMN, X, Y

pytestmark = pytest.mark.question("Q7")


def test_z_column_4_2(device: torch.device, measure: Measure) -> None:
    x, y = printed(X, device), printed(Y, device)
    eles = torch.stack((x, y))[:, 4, 2]
    measure("z[:, 4, 2]", str(eles.cpu()), device)
    assert str(eles.shape) == "torch.Size([2])", f"z[:, 4, 2] has shape {eles.shape}"
    assert_printed(eles, Z_COLUMN, "z[:, 4, 2]")
    assert str(eles.cpu()) == "tensor([0.1092, 1.3210])", f"z[:, 4, 2] prints as {eles.cpu()}"
    assert eles[0].item() == x[4, 2].item(), "z[0, 4, 2] is not x[4, 2]"
    assert eles[1].item() == y[4, 2].item(), "z[1, 4, 2] is not y[4, 2]"


@PROPERTY
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), data=st.data())
def test_slice_over_stack_picks_each_tensors_element(
    device: torch.device, rows: int, cols: int, data: st.DataObject
) -> None:
    i, j = data.draw(st.integers(0, rows - 1), label="i"), data.draw(st.integers(0, cols - 1), label="j")
    x, y = torch.randn(rows, cols, device=device), torch.randn(rows, cols, device=device)
    z = torch.stack((x, y))
    assert torch.equal(z[:, i, j], torch.stack((x[i, j], y[i, j]))), f"z[:, {i}, {j}] is not (x[{i},{j}], y[{i},{j}])"
    assert z[:, i, j].shape == (2,), f"z[:, {i}, {j}] has shape {tuple(z[:, i, j].shape)}"
