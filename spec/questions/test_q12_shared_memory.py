"""Q12: the tensor and its NumPy array share memory.

After Q11's `a = torch.ones(5)`, `b = a.numpy()`, the assignment runs `a[0] += 1` and prints
`tensor([2., 1., 1., 1., 1.])` and `[2.  1.  1.  1.  1.]`: "Tensor a and numpy array b both share the same
underlying memory location. Modifying a changes b and modifying b changes a if the tensor a is on the CPU".

The PDF's double spaces in b's print are a rendering artefact (Q11's print of the same array has single ones),
so b's print is compared with whitespace collapsed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY, numpy_address
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q12")


def _squeeze(text: object) -> str:
    return " ".join(str(text).split())


def test_a_0_plus_1_shows_in_b(measure: Measure) -> None:
    a = torch.ones(5)
    b = a.numpy()
    assert numpy_address(b) == a.data_ptr(), "b does not start at a's memory"
    assert b.nbytes == a.untyped_storage().nbytes(), "b does not cover a's storage"
    a[0] += 1
    measure("b after a[0] += 1", str(b))
    assert str(a) == "tensor([2., 1., 1., 1., 1.])", f"a prints as {a}"
    assert _squeeze(b) == _squeeze("[2.  1.  1.  1.  1.]"), f"b prints as {b}: a[0] += 1 did not reach b"


def test_writing_b_shows_in_a() -> None:
    a = torch.ones(5)
    b = a.numpy()
    b[3] = -4.0
    assert a.tolist() == [1.0, 1.0, 1.0, -4.0, 1.0], f"a is {a.tolist()} after b[3] = -4: b's write did not reach a"


@PROPERTY
@given(n=st.integers(1, 20), data=st.data())
def test_every_element_written_either_way_shows_in_the_other(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1), label="i")
    value = data.draw(st.floats(-1e3, 1e3, width=32), label="value")
    a = torch.zeros(n)
    b = a.numpy()
    assert numpy_address(b) == a.data_ptr(), "a.numpy() is not a's memory"
    a[i] += value
    assert b[i] == np.float32(value), f"a[{i}] += {value} did not show in b"
    b[i] -= np.float32(value)
    assert a[i].item() == 0.0, f"b[{i}] -= {value} did not show in a"
    assert not a.any(), f"a is {a.tolist()}, not all zeros: a write touched another element"
