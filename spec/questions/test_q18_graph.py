"""Q18: building the graph z = 3 y², f = mean(z), and f as a function of x.

The assignment prints (cell [25]):

    z = y * y * 3
    f = z.mean()
    print(z, f)
    # tensor([[27., 27.], [27., 27.]], grad_fn=<MulBackward0>) tensor(27., grad_fn=<MeanBackward0>)

and derives

    f = (3(x1 + 2)² + 3(x2 + 2)² + 3(x3 + 2)² + 3(x4 + 2)²) / 4
      = 3/4 x1² + 3/4 x2² + 3/4 x3² + 3/4 x4² + 3 x1 + 3 x2 + 3 x3 + 3 x4 + 12

The printed values are checked at x = ones; the formula for any finite 2x2 x (hypothesis), in both
of its printed forms. Each test runs on the CPU and, `cuda`-marked, on the GPU.
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

pytestmark = pytest.mark.question("Q18")

FINITE_2X2 = hnp.arrays(np.float32, (2, 2), elements=st.floats(-1e3, 1e3, width=32))


def _graph(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y = x + 2
    z = y * y * 3
    return y, z, z.mean()


def test_z_is_27_everywhere_and_f_is_27(device: torch.device, measure: Measure) -> None:
    x = torch.ones(2, 2, requires_grad=True, device=device)
    _, z, f = _graph(x)
    measure("f = z.mean()", f.item(), device)
    torch.testing.assert_close(z.detach(), torch.full((2, 2), 27.0, device=device), rtol=0, atol=0)
    assert f.shape == torch.Size([]), f"f = z.mean() must be a scalar, got shape {tuple(f.shape)}"
    assert f.item() == 27.0, f"f is {f.item()}, the notebook prints tensor(27.)"
    assert z.device.type == f.device.type == device.type
    assert z.requires_grad
    assert f.requires_grad


def test_grad_fn_names(device: torch.device) -> None:
    x = torch.ones(2, 2, requires_grad=True, device=device)
    _, z, f = _graph(x)
    assert z.grad_fn is not None
    assert f.grad_fn is not None
    assert type(z.grad_fn).__name__ == "MulBackward0", f"z.grad_fn is {z.grad_fn}"
    assert type(f.grad_fn).__name__ == "MeanBackward0", f"f.grad_fn is {f.grad_fn}"


def test_printed_reprs_on_the_cpu() -> None:
    _, z, f = _graph(torch.ones(2, 2, requires_grad=True))
    assert repr(z) == "tensor([[27., 27.],\n        [27., 27.]], grad_fn=<MulBackward0>)"
    assert repr(f) == "tensor(27., grad_fn=<MeanBackward0>)"


@PROPERTY
@given(values=FINITE_2X2)
def test_f_is_three_quarters_of_the_sum_of_squares_of_x_plus_2(device: torch.device, values: np.ndarray) -> None:
    x = torch.from_numpy(values).to(device).requires_grad_()
    _, _, f = _graph(x)
    exact = values.astype(np.float64)
    squares_form = 0.75 * np.sum((exact + 2) ** 2)
    expanded_form = 0.75 * np.sum(exact**2) + 3 * np.sum(exact) + 12
    np.testing.assert_allclose(squares_form, expanded_form, rtol=1e-12, atol=1e-9)
    # float32 arithmetic on values up to 1e3: a few ulps of f, which is at least 0.
    np.testing.assert_allclose(
        f.item(), squares_form, rtol=1e-5, atol=1e-5, err_msg=f"f(x) for x = {values.tolist()} on {device}"
    )
