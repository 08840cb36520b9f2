"""LeNet-5 as the assignment defines it (Q25-Q27)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """Two 5x5 convolutions with ReLU and 2x2 max-pooling, then three linear layers.

    A 1x28x28 image becomes 6x24x24, 6x12x12, 16x8x8, 16x4x4 = 256 features, then
    120, 84 and 10 class scores. The layers keep PyTorch's default initialisation,
    as in the assignment; `he_init_` is the package's better start.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(256, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened 256 features after the second pooling (Q25)."""
        # max_pool(relu(a)) == relu(max_pool(a)), gradients included, and
        # pooling first leaves a quarter of the elements for ReLU to touch.
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@torch.no_grad()
def he_init_(net: nn.Module) -> nn.Module:
    """Kaiming-normal weights for the ReLU layers, zero biases; returns `net`.

    PyTorch's default (std 1/sqrt(3 fan_in)) is too small for a ReLU stack: the
    signal shrinks layer by layer and the first epoch stalls near ln 10.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
