"""Writing results and weights (mnist_lab.files): atomically, and weights that load without running code."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import IO

import pytest
import torch

from mnist_lab.errors import DataError
from mnist_lab.files import atomic_write, load_weights, save_weights, write_json
from mnist_lab.model import LeNet
from spec.package_tests.support import CodeRunningPickle


def leftovers(folder: Path, *expected: str) -> list[str]:
    """Files in `folder` other than `expected`: temporary files an atomic write should have removed."""
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


# --- atomic writes ------------------------------------------------------------------------------------------


def test_atomic_write_writes_the_content_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"complete"))
    assert target.read_bytes() == b"complete"
    assert leftovers(tmp_path, "out.bin") == [], "a temporary file was left behind"


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, interruption: type[BaseException]
) -> None:
    target = tmp_path / "out.json"
    target.write_text("old results\n")

    def half_then_interrupted(f: IO[bytes]) -> None:
        f.write(b'{"test_accuracy": 9')
        raise interruption("stopped half-way")

    with pytest.raises(interruption):
        atomic_write(target, half_then_interrupted)
    assert target.read_text() == "old results\n", "the old file was truncated or replaced by a half-written one"
    assert leftovers(tmp_path, "out.json") == [], "the half-written temporary file was left behind"


def test_interrupted_first_write_leaves_no_file(tmp_path: Path) -> None:
    def interrupted(f: IO[bytes]) -> None:
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.json", interrupted)
    assert leftovers(tmp_path) == [], "an interrupted first write left a file"


def test_old_file_is_intact_until_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "weights.pt"
    target.write_bytes(b"old weights")
    seen_during_write: list[bytes] = []

    def write(f: IO[bytes]) -> None:
        f.write(b"new ")
        seen_during_write.append(target.read_bytes())
        f.write(b"weights")

    atomic_write(target, write)
    assert seen_during_write == [b"old weights"], "the target was truncated before the new content was complete"
    assert target.read_bytes() == b"new weights"


def test_new_file_gets_the_usual_permissions_not_mkstemps_0600(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "out.json").stat().st_mode)
    assert mode == 0o644, f"a new result file has mode {mode:o}, expected 644 under umask 022"


def test_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write(target, lambda f: f.write(b"[]"))
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o640, f"the replaced file's mode changed from 640 to {mode:o}"


def test_write_json_round_trips(tmp_path: Path) -> None:
    record = {"test_accuracy": 98.5, "epochs": 3, "loss_log": [[1, 100, 0.5]]}
    write_json(tmp_path / "r.json", record)
    assert json.loads((tmp_path / "r.json").read_text()) == record


# --- weights ------------------------------------------------------------------------------------------------


def test_saved_weights_load_weights_only_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = LeNet()
    path = tmp_path / "w.pt"
    save_weights(net, path)
    state = torch.load(path, weights_only=True)  # loadable without running code from the file
    assert set(state) == set(net.state_dict())
    other = load_weights(LeNet(), path)
    for name, tensor in net.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), f"{name} changed on the way through the file"


def test_the_crafted_pickle_really_runs_code(tmp_path: Path) -> None:
    """The payload the next tests use is live: plain unpickling runs it. Otherwise their refusals prove nothing."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(CodeRunningPickle(marker)))  # running code is the point here
    assert marker.exists(), "the crafted pickle does not run code, so it cannot show that loading refuses code"


@pytest.mark.parametrize("form", ["torch.save", "bare pickle"])
def test_weights_that_would_run_code_are_refused(tmp_path: Path, form: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    payload = {"conv1.weight": CodeRunningPickle(marker)}
    if form == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError) as caught:
        load_weights(LeNet(), path)
    assert not marker.exists(), "loading the weights ran code from the file"
    message = str(caught.value)
    assert str(path) in message, f"the message does not name the file: {message!r}"
    assert "refused" in message, f"the message does not say the file was refused: {message!r}"
    assert "\n" not in message, f"the message is more than one line: {message!r}"
    assert "\x1b" not in message, f"the message carries terminal escape codes: {message!r}"
    assert "weights_only` set to `False`" not in message, f"the message advises loading unsafely: {message!r}"


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ("shape", ["fc3.weight", "(5, 84)", "(10, 84)"]),
        ("missing", ["fc3.bias"]),
        ("unexpected", ["fc4.weight"]),
    ],
)
def test_weights_of_the_wrong_shape_or_names_are_refused_by_name(tmp_path: Path, change: str, names: list[str]) -> None:
    state = LeNet().state_dict()
    if change == "shape":
        state["fc3.weight"] = torch.zeros(5, 84)
    elif change == "missing":
        del state["fc3.bias"]
    else:
        state["fc4.weight"] = torch.zeros(3, 3)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    net = LeNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(DataError) as caught:
        load_weights(net, path)
    for name in names:
        assert name in str(caught.value), f"the message does not name {name}: {caught.value}"
    for key, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[key]), f"refused weights still changed {key}"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "refused"),
        (b"hello world, not weights", "refused"),
        (b"PK\x03\x04" + bytes(100), "refused"),
        (None, "not a state dict of tensors"),
    ],
    ids=["empty", "text", "broken zip", "a lone tensor"],
)
def test_files_that_are_not_weights_are_data_errors(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "w.pt"
    if content is None:
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=problem) as caught:
        load_weights(LeNet(), path)
    assert str(path) in str(caught.value), f"the message does not name the file: {caught.value}"


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_weights(LeNet(), tmp_path / "absent.pt")
