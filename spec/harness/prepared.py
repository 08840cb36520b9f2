"""MNIST as grading hands it out, prepared once into .npy files that every process maps instead of copying.

A folder holds, for each split, what the course's loader gives (`columns`, (784, N) uint8, and `labels`,
(N,) int64) and the images as the printed cells prepare them (`images`, (N, 1, 28, 28) float32, cell
[28]'s normalisation). The grader's tests map these files; a notebook's sandboxed worker maps the same
images, read-only (spec/sandbox/client.py), and never sees the labels, which lie in a folder of their own
that bubblewrap hides (containment.PRIVATE); and a batch prepares one folder for all its notebooks
(spec/grade/batch.py, `--mnist-folder`). The pages are the kernel's page cache, shared by every process
that maps them and reclaimable under memory pressure: no process holds a private copy of the data set.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from spec.harness import cells
from spec.harness.notebook import course_tools  # the course's loader, as grading serves it
from spec.sandbox.client import mapped
from spec.sandbox.containment import PRIVATE

SPLITS = ("training", "testing")
PARTS = ("columns", "labels", "images")


def path(folder: Path, split: str, part: str) -> Path:
    return (folder / PRIVATE if part == "labels" else folder) / f"{split}-{part}.npy"


def prepare(folder: Path, split: str) -> None:
    """Write `split`'s files into `folder`, each whole or not at all, unless they are there already."""
    if all(path(folder, split, part).is_file() for part in PARTS):
        return
    columns, labels = course_tools().load(split)
    images = np.ascontiguousarray(cells.layout(cells.normalize_as_printed(columns)))
    (folder / PRIVATE).mkdir(parents=True, exist_ok=True)
    for part, array in zip(PARTS, (columns, labels, images), strict=True):
        _save(path(folder, split, part), array)


def _save(file: Path, array: np.ndarray) -> None:
    """Whole or not at all, and safe against another process preparing the same file (xdist's workers)."""
    fd, part = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.chmod(part, 0o644)  # mkstemp's 0600 would keep it from a worker of another user
        os.replace(part, file)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def columns(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNISTtools.load(split), over the mapped files (copy-on-write: what a test changes stays its own)."""
    prepare(folder, split)
    return tuple(np.asarray(np.load(path(folder, split, part), mmap_mode="c")) for part in ("columns", "labels"))


def tensors(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells [29]-[35] for `split`: the images as a tensor over the mapped file (copy-on-write), the labels."""
    prepare(folder, split)
    file = str(path(folder, split, "images"))
    images = mapped(torch.from_numpy(np.asarray(np.load(file, mmap_mode="c"))), file)
    labels = torch.from_numpy(np.load(path(folder, split, "labels"), allow_pickle=False))
    return images, labels
