"""mnist_lab.show (Q23's MNISTtools.show, as the package serves it): a digit drawn without a screen.

`show(image, path=None, scale=10)` returns the digit as text, one line per pixel row, and with a path
also writes a PNG, the 28x28 image magnified by a whole factor. The PNG is decoded here with zlib alone
and compared with the image. The course's MNISTtools.show draws with cmap Greys (ink dark on white), a
plain gray map draws ink light on black: neither is fixed, so the PNG's shades must be a monotone
function of the pixel values, in either direction.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnist_lab import show
from spec.harness.helpers import SPLITS

pytestmark = pytest.mark.usefixtures("no_screen")  # drawing needs no display

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


# --- a minimal PNG reader: 8-bit, non-interlaced, any colour type, any row filter -------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> np.ndarray:
    stride = width * bpp
    assert len(raw) == height * (stride + 1), f"IDAT holds {len(raw)} bytes, expected {height * (stride + 1)}"
    rows = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for r in range(height):
        kind = raw[r * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=r * (stride + 1) + 1)
        if kind == 0:
            out = line.copy()
        elif kind == 2:
            out = (line.astype(np.uint16) + previous).astype(np.uint8)
        elif kind in (1, 3, 4):
            out = np.zeros(stride, dtype=np.uint8)
            for i in range(stride):
                a = int(out[i - bpp]) if i >= bpp else 0
                b = int(previous[i])
                c = int(previous[i - bpp]) if i >= bpp else 0
                predictor = a if kind == 1 else (a + b) // 2 if kind == 3 else _paeth(a, b, c)
                out[i] = (int(line[i]) + predictor) & 0xFF
        else:
            raise AssertionError(f"row {r} has PNG filter type {kind}, which does not exist")
        rows[r] = out
        previous = out
    return rows


def read_png_gray(data: bytes) -> np.ndarray:
    """A PNG's pixels as float64 gray levels in [0, 255], shape (height, width); checks every chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG: starts with {data[:8]!r}"
    position, chunks = 8, []
    while position < len(data):
        assert position + 12 <= len(data), "PNG truncated inside a chunk header"
        (length,) = struct.unpack(">I", data[position : position + 4])
        tag = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert len(body) == length, f"PNG chunk {tag!r} truncated"
        assert zlib.crc32(tag + body) == crc, f"PNG chunk {tag!r} has a bad CRC"
        chunks.append((tag, body))
        position += 12 + length
        if tag == b"IEND":
            break
    tags = [tag for tag, _ in chunks]
    assert tags[0] == b"IHDR", f"the first PNG chunk is {tags[0]!r}, not IHDR"
    assert tags[-1] == b"IEND", "the PNG does not end with IEND"
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (compression, filtering) == (0, 0), "PNG compression and filter methods must be 0"
    assert depth == 8, f"this reader takes 8-bit PNGs; the PNG has bit depth {depth}"
    assert interlace == 0, "this reader takes non-interlaced PNGs"
    assert colour in CHANNELS, f"PNG colour type {colour} does not exist"
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    pixels = _unfilter(raw, width, height, CHANNELS[colour]).reshape(height, width, CHANNELS[colour])
    if colour == 3:
        palette = np.frombuffer(dict(chunks)[b"PLTE"], dtype=np.uint8).reshape(-1, 3)
        pixels = palette[pixels[..., 0]]
    colours = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., :1]
    return colours.astype(np.float64).mean(axis=-1)


@pytest.fixture(params=SPLITS)
def image_42(request: pytest.FixtureRequest, mnist) -> np.ndarray:
    return mnist[request.param][0][42, 0].numpy()



# --- show, as text ----------------------------------------------------------------------------------------


def test_show_returns_the_digit_as_text(image_42: np.ndarray, tmp_path: Path) -> None:
    text = show(image_42, tmp_path / "digit.png")
    assert isinstance(text, str), f"show returned {type(text).__name__}, not str"
    lines = text.splitlines()
    assert len(lines) == 28, f"show's text has {len(lines)} lines, not one per pixel row"
    # All-background rows render alike; every row with bright ink renders differently from them.
    background = {lines[r] for r in range(28) if np.all(image_42[r] == image_42.min())}
    assert len(background) == 1, f"the background rows render as {len(background)} different lines"
    (blank,) = background
    inked = [r for r in range(28) if image_42[r].max() > 0]
    assert inked, "image 42 has no bright pixel"
    not_shown = [r for r in inked if lines[r] == blank]
    assert not not_shown, f"rows {not_shown} hold ink but render like the background:\n{text}"


def test_show_without_path_writes_nothing(
    image_42: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = show(image_42)
    assert isinstance(text, str)
    assert len(text.splitlines()) == 28
    assert list(tmp_path.iterdir()) == [], "show(image) without a path wrote files"


def test_training_and_test_42_render_differently(mnist) -> None:
    texts = {split: show(mnist[split][0][42, 0]) for split in SPLITS}
    assert texts["training"] != texts["testing"], "a 7 and a 4 render as the same text"


# --- show, as a PNG ---------------------------------------------------------------------------------------


def _block_means(gray: np.ndarray, scale: int) -> np.ndarray:
    return gray.reshape(28, scale, 28, scale).mean(axis=(1, 3))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_show_writes_a_png_of_the_image(image_42: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    show(image_42, path)
    assert path.is_file(), "show(image, path) wrote no file"
    gray = read_png_gray(path.read_bytes())
    height, width = gray.shape
    assert width % 28 == 0, f"the PNG is {width} pixels wide, not a whole magnification of 28"
    assert height % 28 == 0, f"the PNG is {height} pixels high, not a whole magnification of 28"
    assert width == height, f"the PNG is {width}x{height}: the digit is square"
    scale = width // 28
    assert scale >= 1
    shades = _block_means(gray, scale)
    assert shades.max() - shades.min() >= 128, f"the PNG is nearly blank: shades {shades.min()}-{shades.max()}"
    similarity = abs(_correlation(shades, image_42))  # ink light or ink dark
    assert similarity >= 0.95, f"the PNG does not look like the image: |correlation| {similarity:.3f}"
    transposed = abs(_correlation(shades, image_42.T))
    assert similarity > transposed + 0.1, f"the PNG looks as much like the image transposed ({transposed:.3f})"


def test_png_pixels_follow_the_image_order(image_42: np.ndarray, tmp_path: Path) -> None:
    """The PNG's shades are a monotone function of the pixel values: ink light on dark, or dark on light."""
    path = tmp_path / "digit.png"
    show(image_42, path)
    gray = read_png_gray(path.read_bytes())
    scale = gray.shape[0] // 28
    # Block centres, away from any smoothing between neighbouring pixels.
    centres = gray[scale // 2 :: scale, scale // 2 :: scale][:28, :28]
    order = np.argsort(image_42.ravel(), kind="stable")
    image_sorted, shades_sorted = image_42.ravel()[order], centres.ravel()[order]
    steps = np.diff(shades_sorted)[np.diff(image_sorted) > 0]  # shade changes between distinct pixel values
    rising, falling = bool(np.all(steps >= -1)), bool(np.all(steps <= 1))  # 1 level of rounding either way
    assert rising or falling, "the PNG's shades go up and down with the pixel value: some pixels are drawn wrong"
    contrast = abs(shades_sorted[-1] - shades_sorted[0])
    assert contrast >= 128, f"full ink and background differ by only {contrast} gray levels"


def test_png_magnification_follows_scale(image_42: np.ndarray, tmp_path: Path) -> None:
    for scale in (1, 3):
        path = tmp_path / f"digit-{scale}.png"
        show(image_42, path, scale=scale)
        gray = read_png_gray(path.read_bytes())
        assert gray.shape == (28 * scale, 28 * scale), f"scale={scale} gave a {gray.shape} PNG"
        blocks = gray.reshape(28, scale, 28, scale)
        assert np.all(blocks == blocks[:, :1, :, :1]), f"scale={scale}: each pixel must become a uniform block"
        similarity = abs(_correlation(blocks[:, 0, :, 0], image_42))
        assert similarity >= 0.99, f"scale={scale}: correlation {similarity:.3f}"
