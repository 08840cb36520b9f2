"""mnist-lab: the course assignment on tensors, autograd, MNIST and LeNet-5, as a package.

The names below are the contract the spec in `spec/` tests; another
implementation with the same names can be tested in its place.
"""

from .data import load, load_tensors, normalize_MNIST_images, show, to_torch_layout
from .errors import DataError
from .model import LeNet, he_init_
from .train import (
    RECIPES,
    Recipe,
    TrainingDivergedError,
    TrainResult,
    backprop_deep,
    choose_device,
    evaluate,
    train,
)

__all__ = [
    "RECIPES",
    "DataError",
    "LeNet",
    "Recipe",
    "TrainResult",
    "TrainingDivergedError",
    "backprop_deep",
    "choose_device",
    "evaluate",
    "he_init_",
    "load",
    "load_tensors",
    "normalize_MNIST_images",
    "show",
    "to_torch_layout",
    "train",
]
