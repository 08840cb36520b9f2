"""Q20: the gradient of f by hand, checked against autograd.

The assignment derives, from f = 3/4 (x1² + x2² + x3² + x4²) + 3 (x1 + x2 + x3 + x4) + 12 (Q18):

    (∇x f(x))_i = ∂f / ∂x_i = 3/2 x_i + 3

    ∇x f(x) = [[3/2 x1 + 3, 3/2 x2 + 3],      which at x = ones is [[4.5, 4.5],
               [3/2 x3 + 3, 3/2 x4 + 3]]                            [4.5, 4.5]]

"This is consistent with the output of the command x.grad in question 19 ... we have mathematically
verified that autograd produces the correct answer".

The notebook checks one point, x = ones. Here autograd must agree with 3/2 x + 3 for any finite 2x2 x
(hypothesis); for x of n elements, f = z.mean() divides by n, so the same derivation gives
6 (x_i + 2) / n, which is 3/2 x_i + 3 for every 4-element shape. gradcheck compares the analytic
gradient with finite differences in float64. Each test runs on the CPU and, `cuda`-marked, on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spec.harness.helpers import PROPERTY
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q20")

FINITE = st.floats(-1e4, 1e4, width=32)
# float32 autograd against the float64 formula: a few ulps of 1.5 x + 3, which is at most ~1.5e4.
RTOL, ATOL = 1e-5, 1e-5


def f_of(x: torch.Tensor) -> torch.Tensor:
    """Q17-Q18's graph: y = x + 2, z = y * y * 3, f = z.mean()."""
    y = x + 2
    z = y * y * 3
    return z.mean()


def autograd_gradient(values: np.ndarray, device: torch.device) -> np.ndarray:
    x = torch.from_numpy(values).to(device).requires_grad_()
    f_of(x).backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
    assert x.grad.device.type == device.type
    return x.grad.cpu().numpy()


@PROPERTY
@given(values=hnp.arrays(np.float32, (2, 2), elements=FINITE))
def test_gradient_is_1_5_x_plus_3_for_any_2x2_x(device: torch.device, values: np.ndarray) -> None:
    expected = 1.5 * values.astype(np.float64) + 3
    np.testing.assert_allclose(
        autograd_gradient(values, device), expected, rtol=RTOL, atol=ATOL, err_msg=f"x = {values.tolist()}"
    )


@PROPERTY
@given(
    values=st.sampled_from([(4,), (1, 4), (4, 1), (2, 2), (2, 1, 2), (1, 1, 2, 2)]).flatmap(
        lambda shape: hnp.arrays(np.float32, shape, elements=FINITE)
    )
)
def test_gradient_is_1_5_x_plus_3_for_any_four_entries(device: torch.device, values: np.ndarray) -> None:
    expected = 1.5 * values.astype(np.float64) + 3
    np.testing.assert_allclose(
        autograd_gradient(values, device), expected, rtol=RTOL, atol=ATOL, err_msg=f"x = {values.tolist()}"
    )


@PROPERTY
@given(values=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=FINITE))
def test_gradient_is_6_x_plus_2_over_n_for_any_shape(device: torch.device, values: np.ndarray) -> None:
    expected = 6 * (values.astype(np.float64) + 2) / values.size
    np.testing.assert_allclose(
        autograd_gradient(values, device), expected, rtol=RTOL, atol=ATOL, err_msg=f"x = {values.tolist()}"
    )


def test_gradient_at_ones_is_the_printed_4_5(device: torch.device, measure: Measure) -> None:
    grad = autograd_gradient(np.ones((2, 2), dtype=np.float32), device)
    measure("df/dx at x = 1", grad, device)
    np.testing.assert_array_equal(grad, np.full((2, 2), 4.5, dtype=np.float32))


def test_gradcheck_in_float64(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(20)
    for shape in ((2, 2), (3,), (2, 3, 2)):
        x = (10 * torch.randn(shape, dtype=torch.float64, generator=generator)).to(device).requires_grad_()
        assert torch.autograd.gradcheck(f_of, (x,), eps=1e-6, atol=1e-6, rtol=1e-6), f"gradcheck at shape {shape}"
        assert torch.autograd.gradgradcheck(f_of, (x,), eps=1e-6, atol=1e-6, rtol=1e-6), f"gradgradcheck {shape}"


def test_float64_autograd_matches_the_formula_closely(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(20)
    x = (100 * torch.randn(2, 2, dtype=torch.float64, generator=generator)).to(device).requires_grad_()
    f_of(x).backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, 1.5 * x.detach() + 3, rtol=1e-12, atol=1e-12)
