"""MNIST as the course prepares it (Q21-Q24): load, normalise, lay out, show."""

from __future__ import annotations

import os
import string
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, InputError
from .idx import read_idx

DATA_ENV = "MNIST_LAB_DATA"
# An installed wheel carries the data inside the package; a checkout has it in data/mnist.
INSTALLED_DATA = Path(__file__).resolve().parent / "embedded_mnist"
EMBEDDED_DATA = (
    INSTALLED_DATA if INSTALLED_DATA.is_dir() else Path(__file__).resolve().parent.parent / "data" / "mnist"
)
FILES = {
    "training": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "testing": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The MNIST folder: `path`, else $MNIST_LAB_DATA, else the embedded copy."""
    if path is not None:
        folder, origin = Path(path), "given as --data or path"
    elif os.environ.get(DATA_ENV):
        folder, origin = Path(os.environ[DATA_ENV]), f"from ${DATA_ENV}"
    else:
        folder, origin = EMBEDDED_DATA, "the embedded default"
    if not folder.is_dir():
        raise DataError(
            f"{folder} ({origin}): MNIST data folder not found; point --data or ${DATA_ENV} at the folder "
            "that holds the four IDX files"
        )
    return folder


def _checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of each file's decompressed content, from the folder's SHA256SUMS if it has one."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    try:
        text = sums.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{sums}: not a SHA256SUMS text file (not UTF-8)") from None
    except OSError as err:
        raise DataError(f"{sums}: cannot read: {err.strerror or err}") from None
    table = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64 or not all(c in string.hexdigits for c in parts[0]):
            raise DataError(f"{sums}: line {n} is not '<sha256>  <file name>'")
        table[parts[1].lstrip("*")] = parts[0]
    return table


def _read(folder: Path, name: str, sums: dict[str, str]) -> np.ndarray:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return read_idx(candidate, sums.get(name))
    raise DataError(f"{folder / name}(.gz): file not found; point --data or ${DATA_ENV} elsewhere")


def read_split(dataset: str = "training", path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one split, checked for agreement."""
    if dataset not in FILES:
        raise InputError(f"dataset must be 'training' or 'testing', not {dataset!r}")
    folder = data_dir(path)
    sums = _checksums(folder)
    image_name, label_name = FILES[dataset]
    images = _read(folder, image_name, sums)
    labels = _read(folder, label_name, sums)
    where = folder / image_name
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: expected uint8 images of 28x28, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{folder / label_name}: expected a 1-D uint8 label array, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels in {label_name}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{folder / label_name}: label {labels.max()} is outside 0-9")
    return images, labels


def load(dataset: str = "training", path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The course's `MNISTtools.load`: images as a (784, N) uint8 array, one image
    a column, and labels as an (N,) int64 array."""
    images, labels = read_split(dataset, path)
    return np.ascontiguousarray(images.reshape(len(images), 784).T), labels.astype(np.int64)


def normalize_MNIST_images(x: np.ndarray) -> np.ndarray:
    """Map uint8 pixels [0, 255] linearly to float32 [-1, 1]: 0 -> -1, 127.5 -> 0, 255 -> 1 (Q21)."""
    out = np.asarray(x).astype(np.float32)
    out *= np.float32(2 / 255)  # in place: the training set is 188 MB as float32
    out -= np.float32(1)
    return out


def to_torch_layout(columns: np.ndarray) -> np.ndarray:
    """(784, N) columns -> (N, 1, 28, 28), torch's batch x channel x height x width (Q22).

    As the assignment does it: reshape to (28, 28, 1, N), then move the axes.
    """
    n = columns.shape[-1]
    stacked = np.reshape(columns, (28, 28, 1, n))
    return np.ascontiguousarray(np.moveaxis(stacked, [0, 1, 2, 3], [2, 3, 1, 0]))


def load_tensors(dataset: str = "training", path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 images (N, 1, 28, 28) and int64 labels (N,) as tensors (Q24)."""
    # Straight from the file's (N, 28, 28): the same values as Q21-Q22's route
    # through columns, without its two transposing copies.
    images, labels = read_split(dataset, path)
    pixels = normalize_MNIST_images(images)[:, None]
    return torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64))


def _to_gray(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any one-image array (28x28, 1x28x28 or 784 pixels) as uint8 28x28."""
    pixels = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if pixels.size != 784:
        raise InputError(f"expected one 28x28 image, got shape {pixels.shape}")
    pixels = pixels.reshape(28, 28)
    if pixels.dtype == np.uint8:
        return pixels
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels, dtype=np.float64)
    return np.round(scaled * 255).astype(np.uint8)


def _png(gray: np.ndarray) -> bytes:
    """A grayscale PNG; a dozen lines spare the package an imaging dependency."""
    height, width = gray.shape

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    rows = b"".join(b"\0" + row.tobytes() for row in gray)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


_RAMP = " .:-=+*#%@"


def show(image: np.ndarray | torch.Tensor, path: str | os.PathLike | None = None, scale: int = 10) -> str:
    """Render one digit without a screen (Q23): returns it as text for a terminal
    and, with `path`, also writes it as a PNG magnified `scale` times."""
    if scale < 1:
        raise InputError(f"scale must be at least 1, not {scale}")
    gray = _to_gray(image)
    if path is not None:
        big = np.kron(gray, np.ones((scale, scale), dtype=np.uint8))
        Path(path).write_bytes(_png(big))
    levels = (gray.astype(np.int32) * len(_RAMP)) // 256
    return "\n".join("".join(_RAMP[v] * 2 for v in row) for row in levels)
