"""Q21: normalising MNIST pixels from uint8 [0, 255] to float32 [-1, 1].

The assignment prints (cells [28]-[30]):

    def normalize_MNIST_images(x):
        # Convert the uint8 input into float32 for ease of normalization
        fl_x = x.astype(np.float32)
        # Normalize [0 to 255] to [-1 to 1]
        # This means mapping 0 to -1, 255 to 1, and 127.5 to 0
        ret = 2*(fl_x - 255/2.0) / 255
        return ret

    xtrain, ltrain = MNISTtools.load(path='./datasets/MNIST')
    norm_x_train = normalize_MNIST_images(xtrain)
    xtest, ltest = MNISTtools.load(dataset='testing', path='./datasets/MNIST')
    norm_x_test = normalize_MNIST_images(xtest)

The course's loader returns the images as columns, a (784, N) uint8 array. The map is the linear one
v -> 2 v / 255 - 1: checked on all 256 pixel values at once, and on the real data.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spec.harness.helpers import PIXEL_ATOL, SPLIT_SIZES, SPLITS
from spec.harness.impl import Implementation
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q21")


def _exact(values: np.ndarray) -> np.ndarray:
    return 2 * values.astype(np.float64) / 255 - 1


def assert_maps_linearly(pixels: np.ndarray, out: np.ndarray, what: str) -> None:
    """Each pixel v went to 2 v / 255 - 1; the message, in one line, names the first one that did not."""
    expected = _exact(pixels)
    off = np.abs(np.asarray(out, dtype=np.float64) - expected) > PIXEL_ATOL
    if off.any():
        first = tuple(np.argwhere(off)[0])
        raise AssertionError(
            f"{what}: pixel value {pixels[first]} became {float(out[first]):.6g}, not 2 v / 255 - 1 = "
            f"{expected[first]:.6g} ({int(off.sum())} of {off.size} pixels off by more than {PIXEL_ATOL:g})"
        )


def assert_near(value: float, target: float, what: str) -> None:
    assert abs(float(value) - target) <= PIXEL_ATOL, f"{what}: {float(value):.6g}, not {target:g}"


@pytest.fixture(scope="module")
def all_pixel_values(impl: Implementation) -> tuple[np.ndarray, np.ndarray]:
    """Every uint8 value, and the implementation's image of it."""
    values = np.arange(256, dtype=np.uint8)
    return values, impl.normalize_MNIST_images(values.copy())


def test_every_pixel_value_maps_linearly(all_pixel_values: tuple[np.ndarray, np.ndarray]) -> None:
    values, out = all_pixel_values
    assert isinstance(out, np.ndarray), f"normalize_MNIST_images returned {type(out).__name__}, not an ndarray"
    assert out.dtype == np.float32, f"normalised pixels are {out.dtype}, the assignment converts to float32"
    assert out.shape == values.shape, f"the 256 pixel values became an array of shape {out.shape}"
    assert_maps_linearly(values, out, "the 256 pixel values")


def test_endpoints_and_midpoint(all_pixel_values: tuple[np.ndarray, np.ndarray], measure: Measure) -> None:
    _, out = all_pixel_values
    measure("0, 127.5, 255 map to", [float(out[0]), float((out[127] + out[128]) / 2), float(out[255])])
    assert_near(out[0], -1.0, "0 maps to")
    assert_near(out[255], 1.0, "255 maps to")
    # 127.5 is not a uint8: the linear map sends it to the midpoint of 127's and 128's images.
    assert_near((out[127] + out[128]) / 2, 0.0, "127.5 (the midpoint of 127 and 128) maps to")
    worst = float(np.abs(out[::-1] + out).max())
    assert worst <= PIXEL_ATOL, (
        f"the map is not odd about 127.5: v and 255 - v map to values off by {worst:.3g} from -x, x"
    )


def test_strictly_increasing_and_within_minus_one_one(all_pixel_values: tuple[np.ndarray, np.ndarray]) -> None:
    _, out = all_pixel_values
    assert np.all(np.diff(out) > 0), "brighter pixels must map to larger values"
    assert out.min() >= -1.0, f"minimum {out.min()!r} is below -1"
    assert out.max() <= 1.0, f"maximum {out.max()!r} is above 1"
    steps = np.diff(out.astype(np.float64))
    assert np.abs(steps - 2 / 255).max() <= PIXEL_ATOL, (
        f"unequal steps between pixel values: {steps.min():.6g} to {steps.max():.6g}"
    )


@settings(max_examples=50, deadline=None)
@given(pixels=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8), elements=st.integers(0, 255)))
def test_each_pixel_maps_on_its_own(impl: Implementation, pixels: np.ndarray) -> None:
    """Any array, even one without a 0 or a 255: the map is fixed, not stretched to the data's own range."""
    out = impl.normalize_MNIST_images(pixels.copy())
    assert out.shape == pixels.shape, f"pixels of shape {pixels.shape} became {out.shape}"
    assert out.dtype == np.float32, f"pixels became {out.dtype}, not float32"
    assert_maps_linearly(pixels, out, f"pixels {pixels.tolist()}")


def test_columns_keep_their_shape_and_the_input_is_not_modified(impl: Implementation) -> None:
    rng = np.random.default_rng(21)
    columns = rng.integers(0, 256, size=(784, 7), dtype=np.uint8)
    before = columns.copy()
    out = impl.normalize_MNIST_images(columns)
    np.testing.assert_array_equal(columns, before, err_msg="normalize_MNIST_images modified its input")
    assert out.shape == (784, 7), f"(784, 7) columns became {out.shape}"
    assert out.dtype == np.float32
    assert not np.shares_memory(out, columns), "the float32 result must not alias the uint8 input"
    assert_maps_linearly(columns, out, "7 random columns")


@pytest.mark.parametrize("split", SPLITS)
def test_real_data_normalised(
    impl: Implementation, split: str, mnist_columns: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    columns, _ = mnist_columns[split]
    assert columns.shape == (784, SPLIT_SIZES[split]), f"the {split} columns are {columns.shape}"
    assert columns.dtype == np.uint8
    checksum = int(columns.sum(dtype=np.int64))
    out = impl.normalize_MNIST_images(columns)
    assert int(columns.sum(dtype=np.int64)) == checksum, f"normalising the {split} set modified the loaded images"
    assert out.shape == columns.shape
    assert out.dtype == np.float32
    assert out.min() >= -1.0, f"{split}: minimum {out.min()} below -1"
    assert out.max() <= 1.0, f"{split}: maximum {out.max()} above 1"
    assert_near(out.min(), -1.0, f"{split}: the background (the lowest value)")
    assert_near(out.max(), 1.0, f"{split}: full ink (the highest value)")
    # Pixel by pixel, the same map as on the 256 values: equal inputs give equal outputs.
    table = impl.normalize_MNIST_images(np.arange(256, dtype=np.uint8))
    mismatched = np.count_nonzero(out != table[columns])
    assert mismatched == 0, f"{split}: {mismatched} pixels normalised differently from their value alone"
