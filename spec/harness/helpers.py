"""Small helpers and constants shared by the question modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

# The notebook prints 4 decimals: a printed value v stands for anything within half a unit of the last digit.
PRINTED_ATOL = 5e-5

# MNIST's two splits and their sizes.
SPLITS = ("training", "testing")
SPLIT_SIZES = {"training": 60_000, "testing": 10_000}
# Normalised pixels: float32 carries about 7 digits, so 2 v / 255 - 1 computed in float32 is within a
# few 1e-8 of the exact value.
PIXEL_ATOL = 1e-6
# The warning torch gives for .grad of a tensor that is not a leaf (Q17, Q19).
NON_LEAF_GRAD_WARNING = r"\.grad attribute of a Tensor that is not a leaf Tensor is being accessed"

# The dtypes torch and NumPy share, each pair the same bytes: Tensor.numpy() and torch.from_numpy map one to the other.
SHARED_DTYPES = [
    (torch.float64, np.float64),
    (torch.float32, np.float32),
    (torch.float16, np.float16),
    (torch.int64, np.int64),
    (torch.int32, np.int32),
    (torch.int16, np.int16),
    (torch.uint8, np.uint8),
    (torch.bool, np.bool_),
]

# Hypothesis for the spec: few examples, no deadline (the first CUDA call is slow). The `device` fixture is
# function-scoped but immutable, so sharing it between examples is safe.
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Small tensor shapes, scalars and empty tensors included.
SHAPES = array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
# Finite float32 values that keep sums exact enough to compare.
FLOAT32S = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


def printed(values: Sequence, device: torch.device | str = "cpu") -> torch.Tensor:
    """The notebook's printed numbers as the float32 tensor it built from them."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def assert_printed(actual: torch.Tensor, expected: Sequence, what: str) -> None:
    """`actual` agrees with the notebook's 4-decimal print of it."""
    torch.testing.assert_close(
        actual.detach().cpu().double(),
        torch.tensor(expected, dtype=torch.float64),
        atol=PRINTED_ATOL,
        rtol=0,
        msg=lambda m: f"{what} differs from the notebook's printed values:\n{m}",
    )


def numpy_address(array: np.ndarray) -> int:
    """Address of an array's first element, comparable with Tensor.data_ptr()."""
    return array.__array_interface__["data"][0]
