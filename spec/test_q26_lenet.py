"""Q26: the LeNet class.

Documented: conv1 = Conv2d(1, 6, 5), conv2 = Conv2d(6, 16, 5), fc1 = Linear(256, 120),
fc2 = Linear(120, 84), fc3 = Linear(84, 10); ReLU after each convolution and after
fc1 and fc2, 2x2 max-pooling after each convolution; `print(net)` prints the repr below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spec import printed
from spec.impl import impl


def test_print_net_is_the_printed_repr() -> None:
    assert repr(impl.LeNet()) == printed.LENET_REPR, f"print(net) gives\n{impl.LeNet()!r}"


def test_layers() -> None:
    net = impl.LeNet()
    assert isinstance(net, nn.Module), "LeNet must be an nn.Module"
    layers = {name: type(module).__name__ for name, module in net.named_children()}
    assert layers == {"conv1": "Conv2d", "conv2": "Conv2d", "fc1": "Linear", "fc2": "Linear", "fc3": "Linear"}, (
        f"layers {layers}"
    )
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv1.kernel_size) == (1, 6, (5, 5))
    assert (net.conv2.in_channels, net.conv2.out_channels, net.conv2.kernel_size) == (6, 16, (5, 5))
    assert (net.fc1.in_features, net.fc1.out_features) == (256, 120)
    assert (net.fc2.in_features, net.fc2.out_features) == (120, 84)
    assert (net.fc3.in_features, net.fc3.out_features) == (84, 10)


def reference_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The assignment's forward pass, written out with the net's own layers."""
    x = F.max_pool2d(F.relu(net.conv1(x)), (2, 2))
    x = F.max_pool2d(F.relu(net.conv2(x)), (2, 2))
    x = x.view(-1, 256)
    x = F.relu(net.fc1(x))
    x = F.relu(net.fc2(x))
    return net.fc3(x)


def test_forward_is_relu_and_max_pooling(device: torch.device, mnist) -> None:
    net = impl.LeNet().to(device)
    images = mnist["testing"][0][:64].to(device)
    with torch.no_grad():
        torch.testing.assert_close(
            net(images), reference_forward(net, images), rtol=1e-5, atol=1e-5,
            msg=lambda m: f"LeNet.forward is not conv-ReLU-pool twice, then fc-ReLU, fc-ReLU, fc: {m}",
        )  # fmt: skip
