"""Q3: `.double()`.

The assignment runs `x = x.double()` and `y = y.double()` on the tensors of Q1 and Q2; both print with
`dtype=torch.float64)` and the same numbers as before: "The type displayed when we print x and y are
torch.float64".
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import FLOAT32S, PROPERTY
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q3")


def test_double_of_rand_is_float64_with_the_same_values(device: torch.device, measure: Measure) -> None:
    y = torch.rand(5, 3, device=device)
    y64 = y.double()
    measure("rand(5, 3).double()", str(y64.dtype), device)
    assert y64.dtype == torch.float64, f".double() gives {y64.dtype}, not torch.float64"
    assert y64.shape == (5, 3), f".double() changed the shape to {tuple(y64.shape)}"
    assert y64.device == y.device, f".double() moved the tensor from {y.device} to {y64.device}"
    assert y.dtype == torch.float32, f".double() changed the original tensor's dtype to {y.dtype}"
    torch.testing.assert_close(y64, y.to(torch.float64), atol=0, rtol=0, msg=".double() changed the values")
    assert str(y64.cpu()).endswith(", dtype=torch.float64)"), f"a float64 tensor prints as {y64.cpu()}"


@PROPERTY
@given(values=st.lists(FLOAT32S | st.sampled_from([float("inf"), -float("inf"), -0.0]), max_size=20))
def test_double_keeps_every_float32_value_exactly(device: torch.device, values: list[float]) -> None:
    x = torch.tensor(values, dtype=torch.float32, device=device)
    x64 = x.double()
    assert x64.dtype == torch.float64, f".double() gives {x64.dtype}"
    # Every float32 is a float64: widening is exact, and narrowing back is the identity.
    assert torch.equal(x64.float(), x), f".double() lost information: {x} -> {x64}"
    assert torch.equal(x64.cpu(), torch.tensor(x.cpu().tolist(), dtype=torch.float64)), ".double() changed a value"
    assert torch.equal(torch.signbit(x64), torch.signbit(x)), ".double() changed a sign (of -0.0 or an infinity)"
