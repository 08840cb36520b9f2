"""Q26: the LeNet class.

Documented: conv1 = Conv2d(1, 6, 5), conv2 = Conv2d(6, 16, 5), fc1 = Linear(256, 120),
fc2 = Linear(120, 84), fc3 = Linear(84, 10); ReLU after each convolution and after
fc1 and fc2, 2x2 max-pooling after each convolution; `print(net)` prints the repr below.

The forward pass is compared with the spec's own LeNet, as printed, carrying the implementation's
weights: the spec's code never runs on layers of other sizes, so a net that differs fails with what
differs, never with an error from the spec.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spec.harness import printed
from spec.harness.impl import Implementation
from spec.harness.measure import Measure
from spec.sandbox.reference import PrintedLeNet

pytestmark = pytest.mark.question("Q26")


def test_print_net_is_the_printed_repr(impl: Implementation, measure: Measure) -> None:
    got = repr(impl.LeNet()).splitlines()
    want = printed.LENET_REPR.splitlines()
    measure("print(net) lines as printed", f"{sum(a == b for a, b in zip(got, want, strict=False))} of {len(want)}")
    for number, (line, expected) in enumerate(zip(got, want, strict=False), 1):
        assert line == expected, f"print(net) line {number} is `{line.strip()}`, printed `{expected.strip()}`"
    assert len(got) == len(want), f"print(net) has {len(got)} lines, printed {len(want)}:\n" + "\n".join(got)


def test_layers(impl: Implementation) -> None:
    net = impl.LeNet()
    assert isinstance(net, nn.Module), "LeNet must be an nn.Module"
    layers = {name: type(module).__name__ for name, module in net.named_children()}
    assert layers == {"conv1": "Conv2d", "conv2": "Conv2d", "fc1": "Linear", "fc2": "Linear", "fc3": "Linear"}, (
        f"layers {layers}"
    )
    documented = {
        "conv1": "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))",
        "conv2": "Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))",
        "fc1": "Linear(in_features=256, out_features=120, bias=True)",
        "fc2": "Linear(in_features=120, out_features=84, bias=True)",
        "fc3": "Linear(in_features=84, out_features=10, bias=True)",
    }
    for name, want in documented.items():
        got = repr(getattr(net, name))
        assert got == want, f"{name} is {got}, documented {want}"


def test_forward_is_relu_and_max_pooling(impl: Implementation, device: torch.device, mnist) -> None:
    net = impl.LeNet().to(device)
    reference = PrintedLeNet().to(device)
    shapes = {name: tuple(p.shape) for name, p in net.state_dict().items()}
    documented = {name: tuple(p.shape) for name, p in reference.state_dict().items()}
    assert shapes == documented, f"LeNet's parameters {shapes} are not the printed ones {documented}: see Q27"
    reference.load_state_dict(net.state_dict())
    images = mnist["testing"][0][:64].to(device)
    with torch.no_grad():
        got = net(images)
        want = reference(images)
    assert tuple(got.shape) == (64, 10), f"LeNet gives {tuple(got.shape)} scores for 64 images, not (64, 10)"
    torch.testing.assert_close(
        got, want, rtol=1e-5, atol=1e-5,
        msg=lambda m: f"LeNet.forward is not conv-ReLU-pool twice, then fc-ReLU, fc-ReLU, fc: {m}",
    )  # fmt: skip
