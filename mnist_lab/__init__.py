"""mnist-lab: the course assignment on tensors, autograd, MNIST and LeNet-5, as a package.

The names below hold the assignment's (the contract the spec grades, spec/harness/contract.py:
normalize_MNIST_images, LeNet, backprop_deep, and the course's load and show) and the
package's own (training recipes, the fast path, many seeds at once, evaluation, device choice).
"""

from .data import load, load_tensors, normalize_MNIST_images, show, to_torch_layout
from .errors import DataError, InputError
from .model import LeNet, he_init_
from .recipe import RECIPES, Recipe
from .sweep import train_many
from .train import (
    TrainingDivergedError,
    TrainOptions,
    TrainResult,
    backprop_deep,
    choose_device,
    evaluate,
    train,
)

__all__ = [
    "RECIPES",
    "DataError",
    "InputError",
    "LeNet",
    "Recipe",
    "TrainOptions",
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
    "train_many",
]
