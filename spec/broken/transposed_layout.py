"""The (784, N) -> (N, 1, 28, 28) layout swaps rows and columns of every image."""

import numpy as np

from mnist_lab import *  # noqa: F403


def to_torch_layout(columns: np.ndarray) -> np.ndarray:
    stacked = np.reshape(columns, (28, 28, 1, columns.shape[-1]))
    return np.ascontiguousarray(np.moveaxis(stacked, [0, 1, 2, 3], [3, 2, 1, 0]))
