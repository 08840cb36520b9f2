"""Q6: indexing one element.

The assignment reads `ele = y[4, 2]` and `ele_3d = z[1, 4, 2]` (z = stack((x, y)) of Q5) and prints
`ele.item()` and `ele_3d.item()` as `1.3209999799728394` both times: "we were able to access the element of the
5th row and 3rd column in the 2D tensor y ... the same element from the 3D tensor z."

1.3209999799728394 is the float32 nearest 1.3210, widened to a Python float by `.item()`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec.harness.helpers import printed
from spec.harness.measure import Measure
from spec.harness.printed import Y_4_2, X, Y

pytestmark = pytest.mark.question("Q6")


def test_printed_value_is_float32_of_1_3210() -> None:
    assert float(np.float32(1.3210)) == Y_4_2, f"{Y_4_2!r} is not float32(1.3210) = {float(np.float32(1.3210))!r}"


def test_y_4_2_and_z_1_4_2_are_the_same_element(device: torch.device, measure: Measure) -> None:
    x, y = printed(X, device), printed(Y, device)
    z = torch.stack((x, y))
    ele, ele_3d = y[4, 2], z[1, 4, 2]
    measure("y[4, 2].item()", repr(ele.item()), device)
    assert ele.dim() == ele_3d.dim() == 0, f"indexing every axis gives shapes {ele.shape}, {ele_3d.shape}"
    assert ele.dtype == ele_3d.dtype == torch.float32, f"elements are {ele.dtype}, {ele_3d.dtype}"
    assert type(ele.item()) is float, f".item() gives a {type(ele.item())}, not a Python float"
    assert ele.item() == Y_4_2, f"y[4, 2].item() is {ele.item()!r}, printed {Y_4_2!r}"
    assert ele_3d.item() == Y_4_2, f"z[1, 4, 2].item() is {ele_3d.item()!r}, printed {Y_4_2!r}"
    assert repr(ele.item()) == "1.3209999799728394", f".item() prints as {ele.item()!r}"
    assert x[4, 2].item() != Y_4_2, "x[4, 2] should differ from y[4, 2]: z[1] must be y, not x"
