"""Q27: the learnable parameters.

Documented: `net.named_parameters()` lists conv1.weight (6, 1, 5, 5), conv1.bias (6,),
conv2.weight (16, 6, 5, 5), conv2.bias (16,), fc1.weight (120, 256), fc1.bias (120,),
fc2.weight (84, 120), fc2.bias (84,), fc3.weight (10, 84), fc3.bias (10,), each with
requires_grad True: 44,426 parameters in all.
"""

from __future__ import annotations

import pytest

from spec.harness import printed
from spec.harness.impl import Implementation
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q27")


def test_named_parameters(impl: Implementation) -> None:
    listed = [(name, tuple(p.shape)) for name, p in impl.LeNet().named_parameters()]
    assert listed == printed.LENET_PARAMETERS, f"named_parameters() lists {listed}"


def test_every_parameter_requires_grad(impl: Implementation) -> None:
    frozen = [name for name, p in impl.LeNet().named_parameters() if not p.requires_grad]
    assert not frozen, f"parameters without requires_grad: {frozen}"


def test_parameter_count(impl: Implementation, measure: Measure) -> None:
    count = sum(p.numel() for p in impl.LeNet().parameters())
    measure("parameters", count)
    assert count == printed.LENET_PARAMETER_COUNT, f"{count} parameters, documented {printed.LENET_PARAMETER_COUNT}"
