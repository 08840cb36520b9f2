"""Q23: look at image 42 of each split, in torch layout, to check the reorganisation.

The assignment prints (cells [33], [34]):

    # check if our reorganization of training data was correct
    MNISTtools.show(xtrain[42, 0, :, :])
    print(ltrain[42])             # 7   (the figure above it shows a 7)

    # check if our reorganization of testing data was correct
    MNISTtools.show(xtest[42, 0, :, :])
    print(ltest[42])              # not printed; the real data's test label 42 is 4

"we have verified that our reorganization was indeed correct for both the training and testing set of
images, as we displayed the images at index 42 for both, and the corresponding labels".

Here nobody looks, so "shows a 7" is checked by the data: image 42, taken the assignment's way (the
implementation's normalisation, then the printed layout), has a 7 as its best match among the other
training images (a 4 for test image 42), by correlation, so that any linear scale of the pixels matches
alike. Rendering must work without a screen: the course's MNISTtools.show (as mnist_lab serves it) draws
the digit with no display; the package's drawing, text and PNG, is tested in package_tests/test_show.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec.harness.cells import layout
from spec.harness.helpers import SPLITS
from spec.harness.impl import Implementation
from spec.harness.measure import Measure
from spec.harness.printed import TEST_LABEL_42, TRAIN_LABEL_42

pytestmark = [pytest.mark.question("Q23"), pytest.mark.usefixtures("no_screen")]  # drawing needs no display

EXPECTED_LABEL = {"training": TRAIN_LABEL_42, "testing": TEST_LABEL_42}


@pytest.fixture(params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def image_42(impl: Implementation, split: str, mnist_columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """x[42, 0, :, :] the assignment's way: normalise the columns (Q21), lay them out for torch (Q22)."""
    columns, _ = mnist_columns[split]
    normalised = np.asarray(impl.normalize_MNIST_images(columns[:, :43]))
    assert normalised.shape == (784, 43), f"normalize_MNIST_images turned (784, 43) columns into {normalised.shape}"
    return layout(normalised)[42, 0, :, :]


def test_label_42(split: str, mnist_columns: dict[str, tuple[np.ndarray, np.ndarray]], measure: Measure) -> None:
    columns, labels = mnist_columns[split]
    measure(f"{split} label 42", int(labels[42]))
    measure.series("digit", split=split, index=42, label=int(labels[42]), pixels=columns[:, 42].reshape(28, 28))
    assert int(labels[42]) == EXPECTED_LABEL[split], f"{split} label 42 is {labels[42]}"


def _standardised(images: torch.Tensor) -> torch.Tensor:
    """Each row centred and scaled to unit norm: dot products are then correlations."""
    flat = images.reshape(len(images), -1).float()
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / torch.linalg.vector_norm(flat, dim=1, keepdim=True).clamp_min(1e-12)


@pytest.fixture(scope="module")
def training_set(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist["training"]
    return _standardised(images), labels


def test_image_42_shows_its_label(split: str, image_42: np.ndarray, training_set) -> None:
    """The best-matching training image (image 42 itself left out) carries image 42's label: 7, or 4."""
    images, labels = training_set
    query = torch.from_numpy(np.ascontiguousarray(image_42, dtype=np.float32))
    assert bool(torch.isfinite(query).all()), f"{split} image 42 has NaN or infinite pixels"
    assert float(query.max() - query.min()) > 0, f"{split} image 42 is blank after normalisation"
    scores = images @ _standardised(query[None])[0]
    if split == "training":
        scores[42] = -float("inf")
    best = scores.topk(5).indices
    found = labels[best].tolist()
    assert found[0] == EXPECTED_LABEL[split], (
        f"{split} image 42 looks like a {found[0]} (labels of its 5 best matches: {found}), not a "
        f"{EXPECTED_LABEL[split]}: the images and labels are out of step, or the pixels are scrambled"
    )


def test_show_draws_image_42_without_a_screen(impl: Implementation, image_42: np.ndarray) -> None:
    """Cells [33]-[34]: MNISTtools.show(xtrain[42, 0, :, :]) on a machine with no display. The course's
    show draws with matplotlib and returns None; mnist_lab's returns the digit as 28 lines of text."""
    drawn = impl.show(image_42)
    assert drawn is None or (isinstance(drawn, str) and len(drawn.splitlines()) == 28), (
        f"show returned {type(drawn).__name__} {str(drawn)[:60]!r}: neither a drawing (None) nor 28 rows of text"
    )
