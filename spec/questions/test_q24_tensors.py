"""Q24: the prepared data as torch tensors.

The assignment prints (cells [35], [36]):

    xtrain = torch.from_numpy(xtrain)
    ltrain = torch.from_numpy(ltrain)
    xtest = torch.from_numpy(xtest)
    ltest = torch.from_numpy(ltest)

    <class 'torch.Tensor'> torch.float32 torch.Size([60000, 1, 28, 28])
    <class 'torch.Tensor'> torch.int64 torch.Size([60000])
    <class 'torch.Tensor'> torch.float32 torch.Size([10000, 1, 28, 28])
    <class 'torch.Tensor'> torch.int64 torch.Size([10000])

"We have now converted the dataset into torch tensors".

The four lines are top-level code: the spec runs them itself on the arrays the assignment's route gives
(the course loader, the implementation's normalisation, the printed layout). The data is the real MNIST,
so its label counts and first labels are asserted too, and the normalised images lie in [-1, 1];
torch.from_numpy shares the arrays' memory.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec.harness.cells import layout
from spec.harness.helpers import PIXEL_ATOL, SPLIT_SIZES, SPLITS
from spec.harness.impl import Implementation
from spec.harness.measure import Measure
from spec.harness.printed import TEST_FIRST_LABELS, TEST_LABEL_COUNTS, TRAIN_FIRST_LABELS, TRAIN_LABEL_COUNTS

pytestmark = pytest.mark.question("Q24")

LABEL_COUNTS = {"training": TRAIN_LABEL_COUNTS, "testing": TEST_LABEL_COUNTS}
FIRST_LABELS = {"training": TRAIN_FIRST_LABELS, "testing": TEST_FIRST_LABELS}


@pytest.fixture(scope="module", params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def tensors(split: str, normalised, mnist_columns) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells [29]-[35] for one split: xtrain = torch.from_numpy(moved layout of the normalised columns)."""
    columns, labels = mnist_columns[split]
    images = normalised[split]
    assert images.shape == columns.shape, f"normalize_MNIST_images turned {columns.shape} into {images.shape}"
    return torch.from_numpy(layout(images)), torch.from_numpy(labels)


def test_types_dtypes_and_sizes_as_printed(
    split: str, tensors: tuple[torch.Tensor, torch.Tensor], measure: Measure
) -> None:
    images, labels = tensors
    n = SPLIT_SIZES[split]
    measure(
        f"{split} images, labels", [f"{images.dtype} {tuple(images.shape)}", f"{labels.dtype} {tuple(labels.shape)}"]
    )
    printed = [
        f"{type(images)} {images.dtype} {images.size()}",
        f"{type(labels)} {labels.dtype} {labels.size()}",
    ]
    assert printed == [
        f"<class 'torch.Tensor'> torch.float32 torch.Size([{n}, 1, 28, 28])",
        f"<class 'torch.Tensor'> torch.int64 torch.Size([{n}])",
    ], f"cell [36] prints {printed}"


def test_label_counts(split: str, tensors: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = tensors
    assert int(labels.min()) >= 0, f"{split} has a negative label"
    assert int(labels.max()) <= 9, f"{split} has a label above 9"
    counts = torch.bincount(labels.long(), minlength=10).tolist()
    assert counts == LABEL_COUNTS[split], f"{split} label counts {counts}"


def test_first_ten_labels(split: str, tensors: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = tensors
    assert labels[:10].tolist() == FIRST_LABELS[split], f"the first {split} labels are {labels[:10].tolist()}"


def test_images_normalised_to_minus_one_one(split: str, tensors: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = tensors
    low, high = (float(v) for v in torch.aminmax(images))  # a NaN anywhere would make these NaN
    assert low >= -1.0, f"{split} images go down to {low}, below -1"
    assert high <= 1.0, f"{split} images go up to {high}, above 1"
    torch.testing.assert_close(low, -1.0, rtol=0, atol=PIXEL_ATOL, msg=f"{split}: the background must be -1")
    torch.testing.assert_close(high, 1.0, rtol=0, atol=PIXEL_ATOL, msg=f"{split}: full ink must be 1")
    # Every image has a background and some ink.
    per_image_min, per_image_max = torch.aminmax(images.reshape(len(images), -1), dim=1)
    assert bool((per_image_min < -0.99).all()), f"some {split} images have no background pixel"
    assert bool((per_image_max > 0).all()), f"some {split} images have no bright pixel"


def test_from_numpy_shares_the_arrays_memory(
    impl: Implementation, split: str, mnist_columns: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Cell [35] on Q22's arrays: tensors that share the arrays' memory (a slice keeps this quick)."""
    columns, course_labels = mnist_columns[split]
    xs = layout(np.asarray(impl.normalize_MNIST_images(columns[:, :100])))
    ls = course_labels[:100].copy()
    xt, lt = torch.from_numpy(xs), torch.from_numpy(ls)
    assert tuple(xt.shape) == (100, 1, 28, 28), f"100 images became {tuple(xt.shape)}"
    assert np.shares_memory(xt.numpy(), xs), "torch.from_numpy must share the images' memory"
    assert np.shares_memory(lt.numpy(), ls), "torch.from_numpy must share the labels' memory"
    ls[0] += 1
    assert int(lt[0]) == int(ls[0]), "a write to the labels array must show in the tensor"
