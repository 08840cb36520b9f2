"""Q11: a tensor to a NumPy array.

The assignment runs `a = torch.ones(5)`, `b = a.numpy()` and prints::

    tensor([1., 1., 1., 1., 1.])
    [1. 1. 1. 1. 1.]
    <class 'torch.Tensor'> <class 'numpy.ndarray'>
    torch.float32 float32
    torch.Size([5]) (5,)

"b is the numpy version of tensor a and both carry the same data." `.numpy()` does not copy: b is a's memory.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from spec.harness.helpers import PROPERTY, SHARED_DTYPES, numpy_address
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q11")

DTYPES = dict(SHARED_DTYPES)  # torch -> NumPy


def test_ones_to_numpy(measure: Measure) -> None:
    a = torch.ones(5)
    b = a.numpy()
    measure("torch.ones(5).numpy()", f"{b} {b.dtype}")
    assert str(a) == "tensor([1., 1., 1., 1., 1.])", f"a prints as {a}"
    assert str(b) == "[1. 1. 1. 1. 1.]", f"b prints as {b}"
    assert f"{type(a)} {type(b)}" == "<class 'torch.Tensor'> <class 'numpy.ndarray'>", f"types are {type(a)} {type(b)}"
    assert f"{a.dtype} {b.dtype}" == "torch.float32 float32", f"dtypes are {a.dtype} {b.dtype}"
    assert f"{a.size()} {b.shape}" == "torch.Size([5]) (5,)", f"sizes are {a.size()} {b.shape}"
    assert np.array_equal(b, np.ones(5, dtype=np.float32)), f"b holds {b}, not five ones"
    assert numpy_address(b) == a.data_ptr(), "a.numpy() copied the data instead of sharing a's memory"


@PROPERTY
@given(dtype=st.sampled_from(list(DTYPES)), shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
def test_numpy_keeps_dtype_shape_values_and_memory(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    a = (torch.randn(shape) * 50).to(dtype)
    b = a.numpy()
    assert isinstance(b, np.ndarray), f".numpy() gives a {type(b)}"
    assert b.dtype == DTYPES[dtype], f"a {dtype} tensor becomes a {b.dtype} array, not {np.dtype(DTYPES[dtype])}"
    assert b.shape == tuple(a.shape), f".numpy() of shape {tuple(a.shape)} has shape {b.shape}"
    assert b.tolist() == a.tolist(), ".numpy() changed the values"
    assert numpy_address(b) == a.data_ptr(), ".numpy() copied the data"
    assert [s // b.itemsize for s in b.strides] == list(a.stride()), f"strides {b.strides} do not match {a.stride()}"


def test_numpy_of_a_transposed_view_shares_memory() -> None:
    a = torch.arange(6.0).view(2, 3)
    b = a.t().numpy()
    assert np.shares_memory(b, a.numpy()), "a.t().numpy() does not share memory with a"
    assert b.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]], f"a.t().numpy() is {b.tolist()}"
    b[2, 0] = 9.0
    assert a[0, 2].item() == 9.0, "writing into a.t().numpy() does not show in a"
