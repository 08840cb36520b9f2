"""The strict IDX reader (mnist_lab.idx): valid files round-trip, every broken file is one DataError that
names the file and the problem, and no header can make it allocate or take more than the file holds."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import struct
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_lab.errors import DataError
from mnist_lab.idx import parse_idx, read_idx
from spec.package_tests.support import (
    IDX_DTYPES,
    REAL_DATA,
    declared,
    idx_bytes,
    idx_header,
    peak_memory,
    real_head,
    write_file,
)

SUFFIXES = ["", ".gz"]
VALID = idx_bytes(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
TERABYTES = idx_header(0x08, (2**32 - 1, 28, 28))  # a 16-byte header that promises 3.4e12 bytes


def expect_data_error(read: Callable[[], object], path: Path | str, *fragments: str) -> str:
    """`read()` must raise DataError with a one-line message naming `path` and each fragment."""
    with pytest.raises(DataError) as caught:
        read()
    message = str(caught.value)
    assert str(path) in message, f"the message does not name the file {path}: {message!r}"
    assert "\n" not in message, f"the message is more than one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"the message does not say {fragment!r}: {message!r}"
    return message


# --- valid files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_every_idx_dtype_round_trips_raw_and_gzipped(tmp_path: Path, dtype: str, suffix: str) -> None:
    array = np.arange(-30, 30).reshape(3, 4, 5).astype(dtype) if dtype != "u1" else np.arange(60, dtype="u1")
    path = write_file(tmp_path / f"data.idx{suffix}", idx_bytes(array))
    out = read_idx(path)
    assert out.shape == array.shape, f"shape {out.shape}, the header says {array.shape}"
    assert out.dtype == np.dtype(dtype), f"dtype {out.dtype} for {dtype}"
    np.testing.assert_array_equal(out, array, err_msg="values changed on the way through the reader")


@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte"])
def test_real_mnist_files_read_with_their_checksums(name: str) -> None:
    sums = dict(line.split()[::-1] for line in (REAL_DATA / "SHA256SUMS").read_text().splitlines() if line)
    out = read_idx(REAL_DATA / f"{name}.gz", sums[name])
    assert out.dtype == np.uint8
    assert out.shape == ((10_000,) if "labels" in name else (10_000, 28, 28))


def test_matching_sha256_passes_in_either_case(tmp_path: Path) -> None:
    path = write_file(tmp_path / "ok.idx.gz", VALID)
    digest = hashlib.sha256(VALID).hexdigest()
    assert read_idx(path, digest).shape == (3, 28, 28)
    assert read_idx(path, digest.upper()).shape == (3, 28, 28)


# --- broken files --------------------------------------------------------------------------------------------

BROKEN = {
    "empty file": (b"", "truncated"),
    "wrong magic number": (b"\x01\x02" + VALID[2:], "magic number"),
    "unknown dtype code": (VALID[:2] + b"\x07" + VALID[3:], "dtype code 0x07"),
    "zero dimensions": (b"\0\0\x08\0", "0 dimensions"),
    "more dimensions than numpy takes": (idx_header(0x08, (0,) * 65), "65 dimensions"),
    "no items, but a shape numpy cannot hold": (idx_header(0x08, (0, 2**32 - 1, 2**32 - 1)), "too large"),
    "header ends early": (VALID[:10], "truncated"),
    "data ends early": (VALID[:-1], "truncated"),
    "trailing bytes": (VALID + b"\0", "trailing bytes"),
    "header promises terabytes": (TERABYTES + bytes(100), "promises"),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("case", BROKEN)
def test_broken_idx_content_raises_data_error_naming_file_and_problem(tmp_path: Path, case: str, suffix: str) -> None:
    content, problem = BROKEN[case]
    path = write_file(tmp_path / f"broken.idx{suffix}", content)
    expect_data_error(lambda: read_idx(path), path, problem)


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


GZ = gzip.compress(VALID, mtime=0)
BROKEN_GZ = {
    "not gzip at all": VALID,
    "truncated gzip": GZ[: len(GZ) // 2],
    "gzip cut before its trailer": GZ[:-8],
    "bad CRC": _flip(GZ, len(GZ) - 8),
    "garbage after the gzip member": GZ + b"junk",
}


@pytest.mark.parametrize("case", BROKEN_GZ)
def test_broken_gzip_raises_data_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "broken.idx.gz"
    path.write_bytes(BROKEN_GZ[case])
    expect_data_error(lambda: read_idx(path), path, "gzip")


def test_gzip_errors_from_a_stream_are_data_errors_too() -> None:
    stream = gzip.GzipFile(fileobj=io.BytesIO(GZ[: len(GZ) // 2]))
    expect_data_error(lambda: parse_idx(stream, "stream.gz"), "stream.gz", "gzip")


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.idx.gz"
    expect_data_error(lambda: read_idx(path), path, "not found")


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    expect_data_error(lambda: read_idx(tmp_path), tmp_path, "cannot read")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_sha256_mismatch_is_refused(tmp_path: Path, suffix: str) -> None:
    path = write_file(tmp_path / f"data.idx{suffix}", VALID)
    expect_data_error(lambda: read_idx(path, "0" * 64), path, "SHA-256", "0" * 64)


def test_one_changed_pixel_fails_the_real_checksum(tmp_path: Path) -> None:
    content = real_head("t10k-images-idx3-ubyte", 5)
    digest = hashlib.sha256(content).hexdigest()
    path = write_file(tmp_path / "t10k.gz", _flip(content, 500))
    expect_data_error(lambda: read_idx(path, digest), path, "SHA-256")


# --- lying headers cost nothing ------------------------------------------------------------------------------

LYING = {
    "16-byte header": TERABYTES,
    "real header, count 2**32-1": idx_header(0x08, (2**32 - 1, 28, 28)) + real_head("t10k-images-idx3-ubyte", 50)[16:],
    "10**12 items in two dimensions": idx_header(0x08, (10**6, 10**6)) + bytes(1000),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("case", LYING)
def test_header_claiming_terabytes_fails_at_once(tmp_path: Path, case: str, suffix: str) -> None:
    path = write_file(tmp_path / f"lie.idx{suffix}", LYING[case])
    start = time.perf_counter()
    with peak_memory() as peak:
        expect_data_error(lambda: read_idx(path), path, "promises")
    seconds = time.perf_counter() - start
    assert peak[0] < 1 << 20, f"refusing a lying header took {peak[0] / 2**20:.1f} MiB"
    assert seconds < 1.0, f"refusing a lying header took {seconds:.2f} s"


def test_gzip_bomb_under_a_lying_header_is_refused_before_decompressing(tmp_path: Path) -> None:
    """64 MiB of zeros compress to 64 KiB: 1032 times that still cannot hold the 3.4 TB the header claims,
    so the reader must refuse without inflating the 64 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    chunks = [compressor.compress(TERABYTES)]
    chunks += [compressor.compress(bytes(1 << 20)) for _ in range(64)]
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(b"".join(chunks) + compressor.flush())
    with peak_memory() as peak:
        expect_data_error(lambda: read_idx(path), path, "promises")
    assert peak[0] < 8 << 20, f"the reader inflated {peak[0] / 2**20:.0f} MiB before refusing the header"


# --- fuzzing: any bytes give a faithful array or a DataError, quickly and in little memory ----------------------

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=1),
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
MEMORY_LIMIT = 16 << 20  # inputs are a few KiB: anything near this means a header was believed


def check_reader(content: bytes, read: Callable[[], np.ndarray]) -> None:
    """`read()` of `content` returns exactly the array its header declares, or raises DataError; nothing else,
    and within the memory limit."""
    out: np.ndarray | None = None
    message = ""
    with peak_memory() as peak:
        try:
            out = read()
        except DataError as err:
            message = str(err)
    assert peak[0] < MEMORY_LIMIT, f"reading {len(content)} bytes took {peak[0] / 2**20:.0f} MiB"
    if out is None:
        assert message, "a DataError without a message"
        assert "\n" not in message, f"a DataError should be one line: {message!r}"
    else:
        dtype, shape, header = declared(content)
        assert out.shape == shape, f"array of shape {out.shape} from a header that says {shape}"
        assert out.dtype == dtype, f"array of dtype {out.dtype} from a header that says {dtype}"
        assert out.tobytes() == content[header:], "the array is not the file's data"


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(content: bytes) -> None:
    check_reader(content, lambda: parse_idx(io.BytesIO(content), "fuzz"))


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_inside_gzip(content: bytes) -> None:
    check_reader(content, lambda: parse_idx(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(content))), "fuzz.gz"))


@FUZZ
@given(st.binary(max_size=2048), st.data())
def test_fuzz_damaged_gzip(content: bytes, data: st.DataObject) -> None:
    compressed = bytearray(gzip.compress(content))
    for _ in range(data.draw(st.integers(1, 3), label="damaged bytes")):
        position = data.draw(st.integers(0, len(compressed) - 1), label="position")
        compressed[position] = data.draw(st.integers(0, 255), label="value")
    cut = data.draw(st.integers(0, len(compressed)), label="kept length")

    def read() -> np.ndarray:
        return parse_idx(gzip.GzipFile(fileobj=io.BytesIO(bytes(compressed[:cut]))), "fuzz.gz")

    out: np.ndarray | None = None
    with peak_memory() as peak, contextlib.suppress(DataError):
        out = read()
    assert peak[0] < MEMORY_LIMIT, f"reading damaged gzip took {peak[0] / 2**20:.0f} MiB"
    if out is not None:
        assert out.ndim >= 1, "an IDX array has at least one dimension"


INTERESTING_DIMS = [0, 1, 2, 3, 27, 28, 29, 784, 10_000, 60_000, 10**6, 2**31, 2**32 - 1]
HEADERS = {name: real_head(name, 3) for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@st.composite
def mutated_real_file(draw: st.DrawFn) -> bytes:
    """A 3-item file with MNIST's own header, then a few header fields rewritten and the data cut or extended."""
    content = bytearray(HEADERS[draw(st.sampled_from(sorted(HEADERS)), label="file")])
    ndim = content[3]
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        field = draw(st.integers(0, 3 + ndim), label="field")  # 0-3: the magic's bytes; 4+: a dimension
        if field < 4:
            content[field] = draw(
                st.one_of(st.sampled_from([0, 1, 3, 8, 9, 0x0B, 0x0E, 0x0F, 64, 255]), st.integers(0, 255)),
                label="byte",
            )
        else:
            dim = draw(st.one_of(st.sampled_from(INTERESTING_DIMS), st.integers(0, 2**32 - 1)), label="dimension")
            content[4 * (field - 3) : 4 * (field - 2)] = struct.pack(">I", dim)
    change = draw(st.integers(-40, 40), label="bytes cut (<0) or added (>0)")
    return bytes(content[:change] if change < 0 else content + bytes(change))


@st.composite
def structured_idx(draw: st.DrawFn) -> bytes:
    """A well-formed magic number with any dtype code and up to 255 small or huge dimensions, then about as many
    data bytes as they promise: the inputs that reach the reader's later checks."""
    code = draw(st.one_of(st.sampled_from(sorted(IDX_DTYPES)), st.integers(0, 255)), label="dtype code")
    ndim = draw(st.one_of(st.integers(0, 4), st.integers(0, 255)), label="ndim")
    dims = draw(
        st.lists(st.one_of(st.integers(0, 3), st.sampled_from(INTERESTING_DIMS)), min_size=ndim, max_size=ndim),
        label="dims",
    )
    promised = math.prod(dims) * (IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1)
    size = draw(st.integers(max(0, min(promised, 4096) - 8), min(promised, 4096) + 8), label="data bytes")
    return idx_header(code, tuple(dims)) + bytes(size)


@FUZZ
@given(structured_idx(), st.sampled_from(SUFFIXES))
def test_fuzz_structured_headers(tmp_path_factory: pytest.TempPathFactory, content: bytes, suffix: str) -> None:
    path = write_file(tmp_path_factory.mktemp("fuzz") / f"structured.idx{suffix}", content)
    check_reader(content, lambda: read_idx(path))


@FUZZ
@given(mutated_real_file(), st.sampled_from(SUFFIXES))
def test_fuzz_mutated_real_headers(tmp_path_factory: pytest.TempPathFactory, content: bytes, suffix: str) -> None:
    path = write_file(tmp_path_factory.mktemp("fuzz") / f"mutated.idx{suffix}", content)
    check_reader(content, lambda: read_idx(path))
