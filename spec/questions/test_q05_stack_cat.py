"""Q5: `torch.stack` against `torch.cat`.

The assignment runs `z = torch.stack((x, y))` on the tensors of Q4 and prints `torch.Size([2, 5, 3])`:
"torch.stack() stacks its arguments on a new dimension". Then `torch.cat((x, y), 0)` prints
`torch.Size([10, 3])` and `torch.cat((x, y), 1)` prints `torch.Size([5, 6])`: "The output of this torch.cat()
is still the same dimension (2D)."

Trap: one cell prints `dtype=torch.float64` for z, a stale output (the other print of the same z says
`torch.float32`). Stacking two float32 tensors gives float32.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY, SHAPES, assert_printed, printed
from spec.harness.measure import Measure
from spec.harness.printed import X, Y

pytestmark = pytest.mark.question("Q5")

# cat((x, y), 0) and cat((x, y), 1) as torch prints them (the PDF shows a stray third bracket).
CAT_0_REPR = """tensor([[-0.1859,  1.3970,  0.5236],
        [ 2.3854,  0.0707,  2.1970],
        [-0.3587,  1.2359,  1.8951],
        [-0.1189, -0.1376,  0.4647],
        [-1.8968,  2.0164,  0.1092],
        [ 0.4838,  0.5822,  0.2755],
        [ 1.0982,  0.4932, -0.6680],
        [ 0.7915,  0.6580, -0.5819],
        [ 0.3825, -1.1822,  1.5217],
        [ 0.6042, -0.2280,  1.3210]])"""
CAT_1_REPR = """tensor([[-0.1859,  1.3970,  0.5236,  0.4838,  0.5822,  0.2755],
        [ 2.3854,  0.0707,  2.1970,  1.0982,  0.4932, -0.6680],
        [-0.3587,  1.2359,  1.8951,  0.7915,  0.6580, -0.5819],
        [-0.1189, -0.1376,  0.4647,  0.3825, -1.1822,  1.5217],
        [-1.8968,  2.0164,  0.1092,  0.6042, -0.2280,  1.3210]])"""


def test_stack_is_2x5x3_float32(device: torch.device, measure: Measure) -> None:
    x, y = printed(X, device), printed(Y, device)
    z = torch.stack((x, y))
    measure("stack((x, y)).shape", tuple(z.shape), device)
    assert str(z.shape) == "torch.Size([2, 5, 3])", f"stack((x, y)) has shape {z.shape}"
    assert z.dtype == torch.float32, f"stack of two float32 tensors is {z.dtype} (the notebook's float64 is stale)"
    assert "float64" not in str(z.cpu()), "z prints as float64"
    assert torch.equal(z[0], x), "z[0] is not x"
    assert torch.equal(z[1], y), "z[1] is not y"
    assert_printed(z, [X, Y], "z = stack((x, y))")


def test_cat_keeps_two_dimensions(device: torch.device, measure: Measure) -> None:
    x, y = printed(X, device), printed(Y, device)
    z1, z2 = torch.cat((x, y), 0), torch.cat((x, y), 1)
    measure("cat((x, y), 0 and 1) shapes", [tuple(z1.shape), tuple(z2.shape)], device)
    assert str(z1.shape) == "torch.Size([10, 3])", f"cat((x, y), 0) has shape {z1.shape}"
    assert str(z2.shape) == "torch.Size([5, 6])", f"cat((x, y), 1) has shape {z2.shape}"
    assert z1.dim() == z2.dim() == 2, f"cat changed the number of dimensions to {z1.dim()}, {z2.dim()}"
    assert z1.dtype == z2.dtype == torch.float32, f"cat gives {z1.dtype}, {z2.dtype}"
    assert torch.equal(z1[:5], x), "cat(.., 0) does not start with x's rows"
    assert torch.equal(z1[5:], y), "cat(.., 0) does not put y's rows under x's"
    assert torch.equal(z2[:, :3], x), "cat(.., 1) does not start with x's columns"
    assert torch.equal(z2[:, 3:], y), "cat(.., 1) does not put y's columns after x's"
    assert str(z1.cpu()) == CAT_0_REPR, f"cat((x, y), 0) prints as\n{z1.cpu()}"
    assert str(z2.cpu()) == CAT_1_REPR, f"cat((x, y), 1) prints as\n{z2.cpu()}"


@PROPERTY
@given(shape=SHAPES.filter(lambda s: len(s) >= 1), data=st.data())
def test_stack_adds_a_dimension_and_cat_grows_one(
    device: torch.device, shape: tuple[int, ...], data: st.DataObject
) -> None:
    dim = data.draw(st.integers(0, len(shape) - 1), label="dim")
    x, y = torch.randn(shape, device=device), torch.randn(shape, device=device)
    z = torch.stack((x, y))
    assert z.shape == (2, *shape), f"stack of two {shape} tensors has shape {tuple(z.shape)}"
    assert torch.equal(z, torch.cat((x.unsqueeze(0), y.unsqueeze(0)), 0)), "stack is not cat on a new axis 0"
    c = torch.cat((x, y), dim)
    expected = tuple(2 * n if d == dim else n for d, n in enumerate(shape))
    assert c.shape == expected, f"cat of two {shape} tensors along {dim} has shape {tuple(c.shape)}, not {expected}"
    assert torch.equal(c.narrow(dim, 0, shape[dim]), x), f"cat along {dim} does not start with x"
    assert torch.equal(c.narrow(dim, shape[dim], shape[dim]), y), f"cat along {dim} does not end with y"
