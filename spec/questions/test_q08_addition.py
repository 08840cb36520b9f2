"""Q8: four ways to add.

The assignment prints `x + y`, `torch.add(x, y)` and `x.add(y)` on the tensors of Q4 (the sums in
`spec.harness.printed.X_PLUS_Y`), then runs `torch.add(x, y, out=x)` and prints x with the same sums: "They all do NOT
modify the tensors x and y. Tensor x seems modified in the last statement only because out = x was specified,
which meant that torch stored the output of the addition operation between x and y in the variable x."
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spec.harness.helpers import FLOAT32S, PROPERTY, SHAPES, assert_printed, printed
from spec.harness.measure import Measure
from spec.harness.printed import X_PLUS_Y, X, Y

pytestmark = pytest.mark.question("Q8")

SUM_REPR = """tensor([[ 0.2979,  1.9792,  0.7991],
        [ 3.4836,  0.5639,  1.5290],
        [ 0.4328,  1.8939,  1.3132],
        [ 0.2636, -1.3198,  1.9864],
        [-1.2926,  1.7884,  1.4302]])"""


def test_printed_sums(device: torch.device, measure: Measure) -> None:
    x, y = printed(X, device), printed(Y, device)
    measure("(x + y)[0]", [round(v, 4) for v in (x + y)[0].tolist()], device)
    for how, s in (("x + y", x + y), ("torch.add(x, y)", torch.add(x, y)), ("x.add(y)", x.add(y))):
        assert_printed(s, X_PLUS_Y, how)
        assert str(s.cpu()) == SUM_REPR, f"{how} prints as\n{s.cpu()}"
    assert torch.equal(x, printed(X, device)), "an addition modified x"
    assert torch.equal(y, printed(Y, device)), "an addition modified y"
    address = x.data_ptr()
    result = torch.add(x, y, out=x)
    assert result is x, "torch.add(.., out=x) does not return x"
    assert x.data_ptr() == address, "torch.add(.., out=x) moved x to new memory"
    assert_printed(x, X_PLUS_Y, "x after torch.add(x, y, out=x)")
    assert torch.equal(y, printed(Y, device)), "torch.add(x, y, out=x) modified y"


@PROPERTY
@given(data=st.data(), shape=SHAPES)
def test_three_additions_agree_and_leave_operands_alone(
    device: torch.device, data: st.DataObject, shape: tuple[int, ...]
) -> None:
    a = data.draw(arrays("float32", shape, elements=FLOAT32S), label="x")
    b = data.draw(arrays("float32", shape, elements=FLOAT32S), label="y")
    x, y = torch.tensor(a, device=device), torch.tensor(b, device=device)
    x0, y0 = x.clone(), y.clone()
    plus, add, method = x + y, torch.add(x, y), x.add(y)
    assert torch.equal(plus, add), "x + y and torch.add(x, y) disagree"
    assert torch.equal(plus, method), "x + y and x.add(y) disagree"
    assert torch.equal(x, x0), "an addition modified x"
    assert torch.equal(y, y0), "an addition modified y"
    if plus.numel():
        assert plus.data_ptr() not in (x.data_ptr(), y.data_ptr()), "x + y wrote into an operand"
    torch.testing.assert_close(
        plus.double(), x.double() + y.double(), atol=2**-126, rtol=2**-23, msg=lambda m: f"x + y is not the sum:\n{m}"
    )
    address = x.data_ptr()
    torch.add(x, y, out=x)
    assert x.data_ptr() == address, "torch.add(.., out=x) moved x to new memory"
    assert torch.equal(x, plus), "torch.add(x, y, out=x) did not write x + y into x"
    assert torch.equal(y, y0), "torch.add(x, y, out=x) modified y"
