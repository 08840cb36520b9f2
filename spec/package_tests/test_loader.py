"""The MNIST loader (mnist_lab.data): the course's (784, N) layout, the real label counts, the torch layout
and tensors (to_torch_layout, load_tensors: Q22 and Q24 in one call), where the data folder comes from,
and a DataError naming the file for every way a folder can be wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_lab.data import DATA_ENV, EMBEDDED_DATA, data_dir, load, load_tensors, read_split, show, to_torch_layout
from mnist_lab.errors import DataError
from spec.harness.cells import layout, normalize_as_printed
from spec.package_tests.support import idx_bytes, make_mnist, write_file

# Label counts of the real MNIST splits, digits 0 to 9.
REAL_COUNTS = {
    "training": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "testing": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)


def expect_data_error(folder: Path, *fragments: str, dataset: str = "testing") -> str:
    with pytest.raises(DataError) as caught:
        load(dataset, folder)
    message = str(caught.value)
    assert "\n" not in message, f"the message is more than one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"the message does not say {fragment!r}: {message!r}"
    return message


# --- layout -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_images_are_columns_of_784_uint8_pixels_in_row_major_order(tmp_path: Path, gz: bool) -> None:
    written = make_mnist(tmp_path, n_train=30, n_test=20, gz=gz)
    for split, (images, labels) in written.items():
        columns, got_labels = load(split, tmp_path)
        assert columns.shape == (784, len(images)), f"{split}: shape {columns.shape}, expected (784, N)"
        assert columns.dtype == np.uint8, f"{split}: dtype {columns.dtype}"
        for k in (0, len(images) // 2, len(images) - 1):
            np.testing.assert_array_equal(columns[:, k], images[k].ravel(), err_msg=f"{split}: column {k}")
        assert got_labels.shape == labels.shape, f"{split}: labels of shape {got_labels.shape}"
        assert np.issubdtype(got_labels.dtype, np.integer), f"{split}: labels of dtype {got_labels.dtype}"
        np.testing.assert_array_equal(got_labels, labels, err_msg=f"{split}: labels changed")


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("split", ["training", "testing"])
def test_real_splits_have_mnist_shape_and_label_counts(split: str) -> None:
    images, labels = load(split)  # the embedded data, checked against its SHA256SUMS
    n = sum(REAL_COUNTS[split])
    assert images.shape == (784, n), f"{split}: shape {images.shape}"
    assert images.dtype == np.uint8, f"{split}: dtype {images.dtype}"
    assert labels.shape == (n,), f"{split}: labels of shape {labels.shape}"
    assert np.bincount(labels, minlength=10).tolist() == REAL_COUNTS[split], f"{split}: label counts differ"


@pytest.mark.usefixtures("no_env")
def test_real_test_images_are_the_files_images_as_columns() -> None:
    images, _ = read_split("testing")
    columns, _ = load("testing")
    for k in (0, 42, 9999):
        np.testing.assert_array_equal(columns[:, k], images[k].ravel(), err_msg=f"test image {k}")


def test_unknown_dataset_is_a_value_error(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10)
    with pytest.raises(ValueError, match="validation"):
        load("validation", tmp_path)


# --- where the data comes from ------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
def test_data_folder_defaults_to_the_embedded_copy() -> None:
    assert data_dir() == EMBEDDED_DATA
    assert (EMBEDDED_DATA / "SHA256SUMS").is_file(), "the embedded data has no SHA256SUMS"


def test_environment_variable_picks_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = make_mnist(tmp_path, n_train=10, n_test=7)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    assert load("testing")[0].shape == (784, 7), "load() did not read the folder that $MNIST_LAB_DATA names"
    np.testing.assert_array_equal(load("testing")[1], written["testing"][1])


def test_argument_beats_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "env", n_train=10, n_test=7)
    make_mnist(tmp_path / "arg", n_train=10, n_test=5)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert load("testing", tmp_path / "arg")[0].shape == (784, 5), "the path argument should win over the variable"


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_missing_folder_says_where_it_looked_and_how_to_point_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    missing = tmp_path / "no-such-folder"
    if via == "environment":
        monkeypatch.setenv(DATA_ENV, str(missing))
    with pytest.raises(DataError) as caught:
        load("training", missing if via == "argument" else None)
    message = str(caught.value)
    for fragment in (str(missing), "--data", f"${DATA_ENV}"):
        assert fragment in message, f"the message does not say {fragment!r}: {message!r}"


# --- broken folders -----------------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10)
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    expect_data_error(tmp_path, str(tmp_path / TEST_LABELS), "not found")


def test_images_and_labels_of_different_counts(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10, sums=False)
    write_file(tmp_path / f"{TEST_LABELS}.gz", idx_bytes(np.zeros(9, dtype=np.uint8)))
    expect_data_error(tmp_path, TEST_IMAGES, "10 images but 9 labels")


def test_label_outside_0_to_9(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10, sums=False)
    write_file(tmp_path / f"{TEST_LABELS}.gz", idx_bytes(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], dtype=np.uint8)))
    expect_data_error(tmp_path, TEST_LABELS, "label 10", "0-9")


@pytest.mark.parametrize(
    ("name", "array", "problem"),
    [
        (TEST_IMAGES, np.zeros((10, 27, 27), dtype=np.uint8), "28x28"),
        (TEST_IMAGES, np.zeros((10, 28, 28), dtype=np.float32), "28x28"),
        (TEST_LABELS, np.zeros((10, 1), dtype=np.uint8), "1-D"),
    ],
    ids=["27x27 images", "float images", "2-D labels"],
)
def test_wrong_shape_or_dtype(tmp_path: Path, name: str, array: np.ndarray, problem: str) -> None:
    make_mnist(tmp_path, 10, 10, sums=False)
    write_file(tmp_path / f"{name}.gz", idx_bytes(array))
    expect_data_error(tmp_path, name, problem)


def test_file_changed_after_its_checksum_is_refused(tmp_path: Path) -> None:
    written = make_mnist(tmp_path, 10, 10)
    images = written["testing"][0].copy()
    images[3, 14, 14] ^= 1  # one pixel
    write_file(tmp_path / f"{TEST_IMAGES}.gz", idx_bytes(images))
    expect_data_error(tmp_path, str(tmp_path / f"{TEST_IMAGES}.gz"), "SHA-256")


def test_wrong_checksum_in_sha256sums_is_refused(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10)
    sums = tmp_path / "SHA256SUMS"
    wrong = hashlib.sha256(b"something else").hexdigest()
    sums.write_text("".join(f"{wrong}  {line.split()[1]}\n" for line in sums.read_text().splitlines()))
    expect_data_error(tmp_path, TEST_IMAGES, "SHA-256", wrong)


@pytest.mark.parametrize(
    "content",
    [b"not a checksum line\n", b"%s  %s\n" % (b"z" * 64, TEST_IMAGES.encode()), b"\xff\xfe binary\n"],
    ids=["no digest", "not hex", "not text"],
)
def test_malformed_sha256sums_is_a_data_error(tmp_path: Path, content: bytes) -> None:
    make_mnist(tmp_path, 10, 10)
    (tmp_path / "SHA256SUMS").write_bytes(content)
    expect_data_error(tmp_path, str(tmp_path / "SHA256SUMS"))


def test_truncated_gzip_in_a_folder_is_named(tmp_path: Path) -> None:
    make_mnist(tmp_path, 10, 10)
    path = tmp_path / f"{TEST_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    expect_data_error(tmp_path, str(path), "gzip")


@pytest.mark.parametrize("scale", [0, -3])
def test_show_refuses_a_scale_below_one(tmp_path: Path, scale: int) -> None:
    with pytest.raises(ValueError, match="scale must be at least 1"):
        show(np.zeros((28, 28), dtype=np.uint8), tmp_path / "digit.png", scale=scale)
    assert not (tmp_path / "digit.png").exists(), "a refused scale still wrote a PNG"


# --- the torch layout and tensors -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), dtype=st.sampled_from([np.uint8, np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_to_torch_layout_is_the_printed_cells(n: int, dtype: type, seed: int) -> None:
    """Pixel 28 r + c of column k lands at [k, 0, r, c], as cells [31]-[32] put it; contiguous, input untouched."""
    columns = (np.random.default_rng(seed).uniform(0, 255, size=(784, n))).astype(dtype)
    before = columns.copy()
    out = to_torch_layout(columns)
    np.testing.assert_array_equal(columns, before, err_msg="to_torch_layout modified its input")
    assert out.flags["C_CONTIGUOUS"], "to_torch_layout's result is not contiguous"
    assert out.dtype == columns.dtype, f"{columns.dtype} became {out.dtype}"
    np.testing.assert_array_equal(out, layout(columns), err_msg="to_torch_layout differs from the printed cells")


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("split", ["training", "testing"])
def test_load_tensors_is_the_printed_route(split: str) -> None:
    """load_tensors(split) gives the tensors of cells [28]-[35]: float32 (N, 1, 28, 28), int64 (N,)."""
    images, labels = load_tensors(split)
    columns, course_labels = load(split)
    assert (images.dtype, tuple(images.shape)) == (torch.float32, (columns.shape[1], 1, 28, 28))
    assert (labels.dtype, tuple(labels.shape)) == (torch.int64, (columns.shape[1],))
    np.testing.assert_array_equal(labels.numpy(), course_labels, err_msg=f"{split}: load and load_tensors labels")
    for part in (slice(0, 500), slice(-500, None)):  # the values are checked pixel by pixel in Q21
        want = torch.from_numpy(np.ascontiguousarray(layout(normalize_as_printed(columns[:, part]))))
        torch.testing.assert_close(images[part], want, rtol=0, atol=1e-6, msg=lambda m: f"{split}: {m}")
