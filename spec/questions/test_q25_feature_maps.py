"""Q25: LeNet's feature maps.

Documented: for N images of 28x28, conv1 gives N x 6 x 24 x 24, the first pooling
N x 6 x 12 x 12, conv2 N x 16 x 8 x 8, the second pooling N x 16 x 4 x 4, flattened
to 256 features: W - K + 1 after a KxK convolution, W / L after an LxL pooling.
Asserted on a real forward pass, with hooks on the layers (found by kind and order, so that a
net with other layer names still shows its feature maps; Q26 checks the names).
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.cells import feature_maps
from spec.harness.impl import Implementation
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q25")


def conv_out(width: int, kernel: int) -> int:
    return width - kernel + 1


def pool_out(width: int, size: int) -> int:
    return width // size


def test_the_documented_arithmetic() -> None:
    sizes = [28]
    for op in (lambda w: conv_out(w, 5), lambda w: pool_out(w, 2)) * 2:
        sizes.append(op(sizes[-1]))
    assert sizes == [28, 24, 12, 8, 4], f"W - K + 1 and W / L give {sizes}, not 28, 24, 12, 8, 4"
    assert 16 * sizes[-1] ** 2 == 256, "16 maps of 4x4 are 256 features"


@pytest.mark.parametrize("n", [1, 7, 100])
def test_feature_maps_on_a_real_forward_pass(
    impl: Implementation, device: torch.device, mnist, n: int, measure: Measure
) -> None:
    """The shapes its forward pass makes at conv1's output, conv2's input and output, and the first linear
    layer's input, seen by hooks on those layers (in the order the net registers them)."""
    images = mnist["testing"][0][:n].to(device)
    layers, seen, out = feature_maps(impl.LeNet().to(device), images)
    assert layers["convs"] == 2, f"LeNet has {layers['convs']} Conv2d layers, not 2"
    assert layers["linears"], "LeNet has no Linear layer"
    seen = {name: tuple(shape) for name, shape in seen.items()}
    expected = {"conv1": (n, 6, 24, 24), "pool1": (n, 6, 12, 12), "conv2": (n, 16, 8, 8), "flat": (n, 256)}
    measure("feature maps of one image", {name: shape[1:] for name, shape in seen.items()}, device)
    assert seen == expected, f"feature maps {seen}, documented {expected}"
    assert out.shape == (n, 10), f"LeNet gives {tuple(out.shape)} scores for {n} images, not ({n}, 10)"
    assert out.device.type == device.type, f"scores on {out.device}, net and images on {device}"
