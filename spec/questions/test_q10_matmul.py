"""Q10: reshape, then matrix-multiply.

The assignment runs `x = torch.randn(10, 10)`, `y = torch.randn(2, 100)`, reshapes `x = x.view(1, 100)` and
`y = y.view(100, 2)`, and `z = torch.mm(x, y)`. It prints `torch.Size([10, 10]) torch.Size([2, 100])`,
`torch.Size([1, 100]) torch.Size([100, 2])`, `torch.Size([1, 2])`: "Tensor z is of size (1,100) * (100,2) = (1,2)."

The printed z (`tensor([[ -7.5519, -10.7117]])`) is a random draw, so z is checked against its definition.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q10")


def test_row_vector_times_matrix(device: torch.device, measure: Measure) -> None:
    x, y = torch.randn(10, 10, device=device), torch.randn(2, 100, device=device)
    before = f"{x.size()} {y.size()}"
    x, y = x.view(1, 100), y.view(100, 2)
    after = f"{x.size()} {y.size()}"
    z = torch.mm(x, y)
    measure("torch.mm(x, y).shape", tuple(z.shape), device)
    assert before == "torch.Size([10, 10]) torch.Size([2, 100])", f"sizes print as {before}"
    assert after == "torch.Size([1, 100]) torch.Size([100, 2])", f"reshaped sizes print as {after}"
    assert str(z.size()) == "torch.Size([1, 2])", f"torch.mm(x, y) has size {z.size()}"
    assert z.dtype == torch.float32, f"z is {z.dtype}"
    assert z.device.type == device.type, f"z is on {z.device}, not {device}"
    # z[0, j] = sum_k x[0, k] y[k, j], computed in float64 on the CPU.
    expected = torch.tensor(
        [[sum(x[0, k].item() * y[k, j].item() for k in range(100)) for j in range(2)]], dtype=torch.float64
    )
    torch.testing.assert_close(
        z.cpu().double(),
        expected,
        atol=1e-4,
        rtol=1e-4,
        msg=lambda m: f"torch.mm(x, y) is not the row-times-matrix:\n{m}",
    )


def test_mm_rejects_the_unreshaped_operands(device: torch.device) -> None:
    x, y = torch.randn(10, 10, device=device), torch.randn(2, 100, device=device)
    with pytest.raises(RuntimeError, match=r"cannot be multiplied"):
        torch.mm(x, y)


@PROPERTY
@given(n=st.integers(1, 6), k=st.integers(1, 12), m=st.integers(1, 6))
def test_mm_shapes_and_values(device: torch.device, n: int, k: int, m: int) -> None:
    a, b = torch.randn(n, k, device=device), torch.randn(k, m, device=device)
    c = torch.mm(a, b)
    assert c.shape == (n, m), f"({n}, {k}) @ ({k}, {m}) has shape {tuple(c.shape)}"
    expected = (a.double().unsqueeze(2) * b.double().unsqueeze(0)).sum(1)
    torch.testing.assert_close(
        c.double(), expected, atol=1e-5, rtol=1e-5, msg=lambda msg: f"torch.mm disagrees with its definition:\n{msg}"
    )
