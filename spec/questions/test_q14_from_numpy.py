"""Q14: a NumPy array to a tensor.

The assignment runs `a = np.ones(5)`, `b = torch.from_numpy(a)`, `np.add(a, 1, out=a)` and prints
`[2. 2. 2. 2. 2.]` and `tensor([2., 2., 2., 2., 2.], dtype=torch.float64)`: "Numpy array a and tensor b share the
same underlying location. Modifying a changes b and vice-versa if the tensor is in the CPU."
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from spec.harness.helpers import PROPERTY, SHARED_DTYPES, numpy_address
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q14")

DTYPES = {n: t for t, n in SHARED_DTYPES}  # NumPy -> torch


def test_np_add_out_shows_in_b(measure: Measure) -> None:
    a = np.ones(5)
    b = torch.from_numpy(a)
    measure("torch.from_numpy(np.ones(5)).dtype", str(b.dtype))
    assert b.dtype == torch.float64, f"torch.from_numpy(np.ones(5)) is {b.dtype}, not torch.float64"
    assert b.data_ptr() == numpy_address(a), "torch.from_numpy copied the array instead of sharing its memory"
    np.add(a, 1, out=a)
    assert str(a) == "[2. 2. 2. 2. 2.]", f"a prints as {a}"
    assert str(b) == "tensor([2., 2., 2., 2., 2.], dtype=torch.float64)", f"b prints as {b}: np.add did not reach b"


def test_writing_b_shows_in_a() -> None:
    a = np.ones(5)
    b = torch.from_numpy(a)
    b.mul_(3)
    assert a.tolist() == [3.0] * 5, f"a is {a.tolist()} after b.mul_(3): the tensor's write did not reach a"


def test_torch_tensor_copies_where_from_numpy_shares() -> None:
    a = np.ones(5)
    copied, shared = torch.tensor(a), torch.from_numpy(a)
    a[0] = 7.0
    assert copied.data_ptr() != numpy_address(a), "torch.tensor(a) shares a's memory"
    assert copied[0].item() == 1.0, "torch.tensor(a) sees a's later write"
    assert shared[0].item() == 7.0, "torch.from_numpy(a) does not see a's write"


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(list(DTYPES)), shape=array_shapes(min_dims=1, max_dims=3, min_side=1))
def test_from_numpy_keeps_dtype_shape_values_and_memory(
    data: st.DataObject, dtype: type, shape: tuple[int, ...]
) -> None:
    a = data.draw(arrays(dtype, shape), label="a")
    b = torch.from_numpy(a)
    assert b.dtype == DTYPES[dtype], f"a {np.dtype(dtype)} array becomes a {b.dtype} tensor, not {DTYPES[dtype]}"
    assert tuple(b.shape) == a.shape, f"shape {a.shape} becomes {tuple(b.shape)}"
    assert b.device.type == "cpu", f"torch.from_numpy gives a tensor on {b.device}"
    assert b.data_ptr() == numpy_address(a), "torch.from_numpy copied the array"
    assert np.array_equal(b.numpy(), a, equal_nan=a.dtype.kind == "f"), "torch.from_numpy changed the values"
    flat, b_flat = a.reshape(-1), b.reshape(-1)
    flat[0] = 1
    assert b_flat[0].item() == 1, f"a[0] = 1 did not reach b: b[0] is {b_flat[0].item()}"
    b_flat[-1] = 0
    assert flat[-1] == 0, f"b[-1] = 0 did not reach a: a[-1] is {flat[-1]}"
