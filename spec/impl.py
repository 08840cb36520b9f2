"""The implementation under test, chosen in this one place.

The spec tests `mnist_lab` unless $MNIST_LAB_IMPL (or pytest's `--impl`) names
another module with the same public names. A name that module lacks fails the
tests that use it with "NAME is not defined in MODULE", not a collection error.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

IMPL_ENV = "MNIST_LAB_IMPL"
DEFAULT_IMPL = "mnist_lab"

# The contract: each public name, and the questions whose tests use it.
CONTRACT = {
    "load": "Q21-Q24: load(dataset='training'|'testing', path=None) -> (images (784, N) uint8, labels (N,) int64)",
    "normalize_MNIST_images": "Q21: uint8 [0, 255] -> float32 [-1, 1]",
    "to_torch_layout": "Q22: (784, N) -> (N, 1, 28, 28)",
    "show": "Q23: show(image, path=None) -> str, and a PNG at path",
    "load_tensors": "Q24, Q28-Q33: load_tensors(dataset, path=None) -> (float32 (N, 1, 28, 28), int64 (N,))",
    "LeNet": "Q25-Q33: the nn.Module of Q26",
    "choose_device": "Q15: choose_device('auto'|'cpu'|'cuda') -> torch.device",
    "evaluate": "Q28, Q31, Q33: evaluate(net, x, labels) -> test accuracy in percent",
    "backprop_deep": "Q29-Q31: backprop_deep(xtrain, ltrain, net, T, B=100, gamma=.001, rho=.9), printing the loss",
    "train": "Q31-Q33: train(xtrain, ltrain, *, recipe, epochs, seed, device, log, on_epoch) -> result with .net",
    "RECIPES": "Q31-Q33: {'default': ..., 'assignment': ...}",
}


def implementation_name() -> str:
    return os.environ.get(IMPL_ENV) or DEFAULT_IMPL


def load_implementation() -> ModuleType:
    return importlib.import_module(implementation_name())


class _Implementation:
    """Attribute access on the chosen module; a missing name fails the test that asked."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # pytest and copy probe dunders; they are not the contract
            raise AttributeError(name)
        module = load_implementation()
        try:
            return getattr(module, name)
        except AttributeError:
            pytest.fail(f"{name} is not defined in {module.__name__}", pytrace=False)


impl = _Implementation()
