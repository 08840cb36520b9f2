"""Q13: in-place operations against new tensors.

Continuing Q12 (a is `tensor([2., 1., 1., 1., 1.])`, b = a.numpy()), the assignment runs, printing a and b each
time:

- `a.add_(1)`: `tensor([3., 2., 2., 2., 2.])`, `[3. 2. 2. 2. 2.]`: "add_(1) modifies a in-place, thus modifying
  numpy array b also."
- `a[:] += 1`: `tensor([4., 3., 3., 3., 3.])`, `[4. 3. 3. 3. 3.]`: "This statement modifies a, thus modifying
  numpy b also."
- `a = a.add(1)`: `tensor([5., 4., 4., 4., 4.])`, `[4. 3. 3. 3. 3.]`: "a.add(1) adds 1 to a and returns a new
  tensor ... Thus, b is not modified."
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spec.harness.helpers import PROPERTY, numpy_address
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q13")


def test_the_printed_sequence(measure: Measure) -> None:
    a = torch.ones(5)
    b = a.numpy()
    a[0] += 1
    address = a.data_ptr()

    returned = a.add_(1)
    assert returned is a, "a.add_(1) does not return a itself"
    assert str(a) == "tensor([3., 2., 2., 2., 2.])", f"after a.add_(1), a prints as {a}"
    assert str(b) == "[3. 2. 2. 2. 2.]", f"after a.add_(1), b prints as {b}: the in-place add did not reach b"

    a[:] += 1
    assert a.data_ptr() == address, "a[:] += 1 moved a to new memory"
    assert str(a) == "tensor([4., 3., 3., 3., 3.])", f"after a[:] += 1, a prints as {a}"
    assert str(b) == "[4. 3. 3. 3. 3.]", f"after a[:] += 1, b prints as {b}: the in-place add did not reach b"

    old = a
    a = a.add(1)
    measure("after a = a.add(1): a, b", [a.tolist(), b.tolist()])
    assert a is not old, "a.add(1) returned a itself"
    assert a.data_ptr() != address, "a.add(1) wrote into a's memory"
    assert numpy_address(b) != a.data_ptr(), "the new a still shares b's memory"
    assert str(a) == "tensor([5., 4., 4., 4., 4.])", f"after a = a.add(1), a prints as {a}"
    assert str(b) == "[4. 3. 3. 3. 3.]", f"after a = a.add(1), b prints as {b}: b should be unchanged"
    assert str(old) == "tensor([4., 3., 3., 3., 3.])", f"a.add(1) modified the old a: {old}"


@PROPERTY
@given(values=st.lists(st.integers(-1000, 1000), min_size=1, max_size=20), k=st.integers(-5, 5))
def test_in_place_reaches_the_array_out_of_place_does_not(values: list[int], k: int) -> None:
    a = torch.tensor(values, dtype=torch.float32)
    b = a.numpy()
    start = np.array(values, dtype=np.float32)

    a.add_(k)
    assert np.array_equal(b, start + k), f"a.add_({k}) did not reach b"
    a[:] += k
    assert np.array_equal(b, start + 2 * k), f"a[:] += {k} did not reach b"
    a += k
    assert np.array_equal(b, start + 3 * k), f"a += {k} did not reach b"
    assert numpy_address(b) == a.data_ptr(), "an in-place add moved a"

    new = a.add(k)
    assert new.data_ptr() != a.data_ptr(), "a.add(k) did not allocate a new tensor"
    assert np.array_equal(new.numpy(), start + 4 * k), f"a.add({k}) is not a + {k}"
    assert np.array_equal(b, start + 3 * k), f"a.add({k}) changed b"
    assert np.array_equal(a.numpy(), start + 3 * k), f"a.add({k}) changed a"
