"""Q17: a tensor that requires grad, and the first node of its graph.

The assignment prints (cells [23], [24]):

    x = torch.ones(2, 2, requires_grad=True)      # tensor([[1., 1.], [1., 1.]], requires_grad=True)
    y = x + 2                                     # tensor([[3., 3.], [3., 3.]], grad_fn=<AddBackward0>)
    print(y.requires_grad)                        # True
    print(x.grad)                                 # None
    print(y.grad)                                 # None
    print(x.grad_fn)                              # None
    print(y.grad_fn)                              # <AddBackward0 object at 0x7f95530e7ef0>

"y will have its attribute requires_grad set to True automatically. The grad attributes of both the
tensors x and y are None. This is because the gradient has not been computed yet".

Today's torch also warns (UserWarning) when the .grad of a non-leaf such as y is read; that is
asserted too. Each test runs on the CPU and, `cuda`-marked, on the GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from spec.harness.helpers import NON_LEAF_GRAD_WARNING
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q17")


def _x_and_y(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.ones(2, 2, requires_grad=True, device=device)
    return x, x + 2


def test_y_is_x_plus_two_and_requires_grad(device: torch.device) -> None:
    x, y = _x_and_y(device)
    torch.testing.assert_close(x.detach(), torch.ones(2, 2, device=device), rtol=0, atol=0)
    torch.testing.assert_close(y.detach(), torch.full((2, 2), 3.0, device=device), rtol=0, atol=0)
    assert x.requires_grad, "x was created with requires_grad=True"
    assert y.requires_grad, "y = x + 2 must require grad because x does"
    assert y.device.type == device.type


def test_x_is_a_leaf_without_grad_fn(device: torch.device) -> None:
    x, _ = _x_and_y(device)
    assert x.is_leaf
    assert x.grad_fn is None, f"x.grad_fn is {x.grad_fn}, the notebook prints None"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading a leaf's .grad must not warn
        assert x.grad is None, "no backward has run: x.grad must be None"


def test_y_grad_fn_is_add_backward(device: torch.device, measure: Measure) -> None:
    _, y = _x_and_y(device)
    measure("y.grad_fn", type(y.grad_fn).__name__, device)
    assert not y.is_leaf
    assert y.grad_fn is not None
    assert type(y.grad_fn).__name__ == "AddBackward0", f"y.grad_fn is {y.grad_fn}"
    assert y.grad_fn.name() == "AddBackward0"


def test_reading_y_grad_gives_none_and_warns_that_y_is_not_a_leaf(device: torch.device) -> None:
    _, y = _x_and_y(device)
    with pytest.warns(UserWarning, match=NON_LEAF_GRAD_WARNING):
        grad = y.grad
    assert grad is None, "no backward has run, and y is not a leaf: y.grad must be None"


def test_printed_reprs_on_the_cpu() -> None:
    x, y = _x_and_y(torch.device("cpu"))
    assert repr(x) == "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"
    assert repr(y) == "tensor([[3., 3.],\n        [3., 3.]], grad_fn=<AddBackward0>)"
    assert str(y.grad_fn).startswith("<AddBackward0 object at 0x"), str(y.grad_fn)
