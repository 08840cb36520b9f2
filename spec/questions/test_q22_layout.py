"""Q22: from the course's columns to torch's layout, batch x channel x height x width.

The assignment prints (cells [31], [32]):

    train_resaped = np.reshape(norm_x_train, (28, 28, 1, 60000))
    test_resaped = np.reshape(norm_x_test, (28, 28, 1, 10000))
    print(train_resaped.shape)    # (28, 28, 1, 60000)
    print(test_resaped.shape)     # (28, 28, 1, 10000)

    xtrain = np.moveaxis(train_resaped, [0, 1, 2, 3], [2, 3, 1, 0])
    xtest = np.moveaxis(test_resaped, [0, 1, 2, 3], [2, 3, 1, 0])
    print(xtrain.shape)           # (60000, 1, 28, 28)
    print(xtest.shape)            # (10000, 1, 28, 28)

"we have reorganised the numpy arrays xtrain and xtest such that they conform to the torch conventions
for tensors, which is Batch size * Number of input channels * Image Height * Image width".

These two cells are top-level code: the spec runs them itself (`spec.harness.cells.layout`), on the
implementation's normalised images. So pixel p = 28 r + c of column n (row-major reshape) lands at
[n, 0, r, c]: checked against direct indexing on any small array (hypothesis), and on the real data,
where the implementation's normalisation must keep the (784, N) columns the cells expect.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spec.harness.cells import layout, normalize_as_printed
from spec.harness.helpers import PIXEL_ATOL, SPLIT_SIZES, SPLITS
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q22")


def _by_direct_indexing(columns: np.ndarray) -> np.ndarray:
    """out[n, 0, r, c] = columns[28 r + c, n], written element by element through index arrays."""
    n = columns.shape[1]
    out = np.empty((n, 1, 28, 28), dtype=columns.dtype)
    pixel = np.arange(784)
    out[:, 0, pixel // 28, pixel % 28] = columns.T
    return out


def _disagreement(what: str, difference: torch.Tensor) -> str:
    """Where two large arrays differ by more than PIXEL_ATOL, in one line."""
    where = tuple(int(i) for i in np.unravel_index(int(difference.argmax()), tuple(difference.shape)))
    count = int((difference > PIXEL_ATOL).sum())
    return (
        f"{what} disagree at {count} pixels, by up to {float(difference.max()):g} at {where} (tolerance {PIXEL_ATOL:g})"
    )


@st.composite
def columns_arrays(draw: st.DrawFn) -> np.ndarray:
    """(784, n) columns, every entry random (hypothesis would fill most of a 784-row array with one value)."""
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64]))
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == np.uint8:
        return rng.integers(0, 256, size=(784, n), dtype=np.uint8)
    return rng.uniform(-1, 1, size=(784, n)).astype(dtype)


@settings(max_examples=50, deadline=None)
@given(columns=columns_arrays())
def test_pixel_28r_plus_c_of_column_n_lands_at_n_0_r_c(columns: np.ndarray) -> None:
    n = columns.shape[1]
    out = layout(columns)
    assert out.shape == (n, 1, 28, 28), f"(784, {n}) became {out.shape}, not ({n}, 1, 28, 28)"
    assert out.dtype == columns.dtype, f"{columns.dtype} became {out.dtype}: a layout change keeps the dtype"
    np.testing.assert_array_equal(out, _by_direct_indexing(columns), err_msg="out[n, 0, r, c] != columns[28r+c, n]")


def test_every_position_is_distinguished() -> None:
    """Each entry unique, so a swapped row and column, or a wrong image, cannot hide behind equal values."""
    n = 3
    columns = (np.arange(784)[:, None] + 1000 * np.arange(n)[None, :]).astype(np.float64)
    out = layout(columns)
    expected = np.arange(784).reshape(28, 28)[None, None] + 1000 * np.arange(n)[:, None, None, None]
    np.testing.assert_array_equal(out, expected, err_msg="out[n, 0, r, c] must be pixel 28 r + c of image n")


@pytest.fixture(params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_normalised_real_data_takes_the_printed_shapes(split: str, normalised, measure: Measure) -> None:
    normalised = normalised[split]
    n = SPLIT_SIZES[split]
    measure(f"{split} set in torch layout", tuple(layout(normalised).shape))
    assert normalised.shape == (784, n), (
        f"normalize_MNIST_images turned the {split} columns (784, {n}) into {normalised.shape}: "
        f"cell [31] reshapes its result to (28, 28, 1, {n})"
    )
    assert np.reshape(normalised, (28, 28, 1, n)).shape == (28, 28, 1, n)
    assert layout(normalised).shape == (n, 1, 28, 28), f"the {split} set in torch layout is {layout(normalised).shape}"


def test_the_laid_out_images_are_the_printed_cells_images(
    split: str, normalised, mnist_columns: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Cells [28]-[32] with the implementation's normalisation give the printed cells' images (the first
    100: the layout works image by image, and Q21 checks every pixel's value)."""
    normalised = normalised[split]
    columns, _ = mnist_columns[split]
    assert normalised.shape == columns.shape, f"{split}: normalised to {normalised.shape}, not {columns.shape}"
    got = torch.from_numpy(np.ascontiguousarray(layout(normalised[:, :100])))
    want = torch.from_numpy(np.ascontiguousarray(layout(normalize_as_printed(columns[:, :100]))))
    difference = (got - want).abs()
    assert float(difference.max()) <= PIXEL_ATOL, _disagreement(
        f"{split}: these images and the printed cells'", difference
    )
