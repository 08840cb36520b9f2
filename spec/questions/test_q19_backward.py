"""Q19: backpropagation fills the leaf's gradient, and only the leaf's.

The assignment prints (cells [26], [27]):

    f.backward()
    print(x.grad)                  # tensor([[4.5000, 4.5000], [4.5000, 4.5000]])
    print(f.grad, z.grad, y.grad, x.grad)
    # None None None tensor([[4.5000, 4.5000], [4.5000, 4.5000]])
    print(f.grad_fn, z.grad_fn, y.grad_fn, x.grad_fn)
    # <MeanBackward0 object at ...> <MulBackward0 object at ...> <AddBackward0 object at ...> None
    print(f.requires_grad, z.requires_grad, y.requires_grad, x.requires_grad)
    # True True True True

"By running the code above, we compute the gradient of the tensor f with respect to x using autograd."

f, z and y are not leaves: today's torch warns (UserWarning) when their .grad is read, asserted below.
Each test runs on the CPU and, `cuda`-marked, on the GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from spec.harness.helpers import NON_LEAF_GRAD_WARNING
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q19")


def _backpropagated(device: torch.device) -> dict[str, torch.Tensor]:
    """The cells of Q17-Q19 on `device`, after f.backward()."""
    x = torch.ones(2, 2, requires_grad=True, device=device)
    y = x + 2
    z = y * y * 3
    f = z.mean()
    f.backward()
    return {"f": f, "z": z, "y": y, "x": x}


def test_x_grad_is_4_5_everywhere(device: torch.device, measure: Measure) -> None:
    x = _backpropagated(device)["x"]
    measure("x.grad", None if x.grad is None else x.grad.tolist(), device)
    assert x.grad is not None, "f.backward() must fill x.grad"
    assert x.grad.shape == x.shape, f"x.grad has shape {tuple(x.grad.shape)}, x has {tuple(x.shape)}"
    assert x.grad.dtype == x.dtype
    assert x.grad.device == x.device, f"x.grad is on {x.grad.device}, x on {x.device}"
    torch.testing.assert_close(
        x.grad, torch.full((2, 2), 4.5, device=device), rtol=0, atol=1e-6, msg="x.grad after f.backward()"
    )


def test_x_grad_prints_as_in_the_notebook_on_the_cpu() -> None:
    x = _backpropagated(torch.device("cpu"))["x"]
    assert repr(x.grad) == "tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])"


def test_f_z_y_keep_grad_none_and_warn_that_they_are_not_leaves(device: torch.device) -> None:
    tensors = _backpropagated(device)
    for name in ("f", "z", "y"):
        t = tensors[name]
        assert not t.is_leaf, f"{name} is computed from x: it is not a leaf"
        with pytest.warns(UserWarning, match=NON_LEAF_GRAD_WARNING):
            grad = t.grad
        assert grad is None, f"{name}.grad is {grad}: backward fills only the leaves' .grad"


def test_x_grad_read_does_not_warn(device: torch.device) -> None:
    x = _backpropagated(device)["x"]
    assert x.is_leaf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is not None


def test_grad_fns_after_backward(device: torch.device) -> None:
    tensors = _backpropagated(device)
    names = {name: None if t.grad_fn is None else type(t.grad_fn).__name__ for name, t in tensors.items()}
    assert names == {"f": "MeanBackward0", "z": "MulBackward0", "y": "AddBackward0", "x": None}


def test_all_require_grad(device: torch.device) -> None:
    tensors = _backpropagated(device)
    flags = {name: t.requires_grad for name, t in tensors.items()}
    assert flags == {"f": True, "z": True, "y": True, "x": True}
