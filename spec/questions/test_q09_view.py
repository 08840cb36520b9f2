"""Q9: reshaping with `view`.

The assignment runs `x = torch.randn(4, 4)`, `y = x.view(16)`, `z = x.view(-1, 8)` and prints
`torch.Size([4, 4]) torch.Size([16]) torch.Size([2, 8])`; y lists x's rows one after another. "The -1 in the
argument for the view() function states that the 1st dimension of z should be inferred by torch directly given
that the 2nd dimension of z is 8. This conversion is just 4 * 4 = 16; 16/8 = 2."

A view is not a copy: it shares x's storage, so writing through it changes x.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q9")


def _assert_view_of(v: torch.Tensor, x: torch.Tensor, what: str) -> None:
    v_storage, x_storage = v.untyped_storage().data_ptr(), x.untyped_storage().data_ptr()
    assert v_storage == x_storage, f"{what} does not share x's storage"
    v_first, x_first = v.data_ptr(), x.data_ptr()
    assert v_first == x_first, f"{what} does not start at x's first element"
    assert v._base is x, f"{what} is not recorded as a view of x"


def test_view_16_and_view_minus_1_8(device: torch.device, measure: Measure) -> None:
    x = torch.randn(4, 4, device=device)
    y, z = x.view(16), x.view(-1, 8)
    sizes = f"{x.size()} {y.size()} {z.size()}"
    measure("view(16), view(-1, 8) shapes", [tuple(y.shape), tuple(z.shape)], device)
    assert sizes == "torch.Size([4, 4]) torch.Size([16]) torch.Size([2, 8])", f"sizes print as {sizes}"
    assert torch.equal(y, torch.cat(tuple(x))), "x.view(16) does not list x's rows one after another"
    assert torch.equal(z[0], y[:8]), "x.view(-1, 8)[0] is not the first 8 elements"
    assert torch.equal(z[1], y[8:]), "x.view(-1, 8)[1] is not the last 8 elements"
    _assert_view_of(y, x, "x.view(16)")
    _assert_view_of(z, x, "x.view(-1, 8)")


def test_writing_through_a_view_changes_x(device: torch.device) -> None:
    x = torch.zeros(4, 4, device=device)
    x.view(16)[5] = 7.0
    assert x[1, 1].item() == 7.0, "writing y[5] did not change x[1, 1]"
    x.view(-1, 8)[1, 7] = -3.0
    assert x[3, 3].item() == -3.0, "writing z[1, 7] did not change x[3, 3]"
    x[0, 2] = 2.0
    assert x.view(16)[2].item() == 2.0, "writing x[0, 2] does not show in x.view(16)[2]"


def test_minus_1_must_divide(device: torch.device) -> None:
    x = torch.randn(4, 4, device=device)
    with pytest.raises(RuntimeError, match=r"invalid for input of size 16"):
        x.view(-1, 5)
    with pytest.raises(RuntimeError, match=r"only one dimension can be inferred"):
        x.view(-1, -1)


@PROPERTY
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), data=st.data())
def test_view_infers_minus_1_shares_storage_and_round_trips(
    device: torch.device, rows: int, cols: int, data: st.DataObject
) -> None:
    n = rows * cols
    k = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]), label="k")
    x = torch.randn(rows, cols, device=device)
    v = x.view(-1, k)
    assert v.shape == (n // k, k), f"({rows}, {cols}).view(-1, {k}) has shape {tuple(v.shape)}, not {(n // k, k)}"
    _assert_view_of(v, x, f"x.view(-1, {k})")
    back = v.view(rows, cols)
    assert torch.equal(back, x), "viewing back to x's shape does not give x"
    assert back.data_ptr() == x.data_ptr(), "viewing back to x's shape copied the data"
    v.mul_(2)
    assert torch.equal(x, back), "an in-place change through the view does not show in x"
