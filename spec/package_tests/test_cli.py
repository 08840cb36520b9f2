"""`python -m mnist_lab train | evaluate | show` (mnist_lab.cli): end to end in subprocesses on a small synthetic
MNIST, and every bad option refused with exit 2 and one line before any work starts.

The subprocesses run in a tmp_path folder, so a stray output file would show up there, never in the repository.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_lab import cli, fast_cpu
from mnist_lab.data import DATA_ENV, load_tensors
from mnist_lab.files import save_weights
from mnist_lab.model import LeNet
from mnist_lab.train import evaluate
from spec.package_tests.support import REPO, CodeRunningPickle, make_mnist

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
SYNTHETIC = {"training": 200, "testing": 100}


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A valid MNIST folder of 200 training and 100 test images, with its SHA256SUMS."""
    folder = tmp_path_factory.mktemp("mnist")
    return folder, make_mnist(folder, SYNTHETIC["training"], SYNTHETIC["testing"])


def cli_env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            DATA_ENV: str(data),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",  # xdist workers share the cores
        }
    )
    return env


def run_cli(*args: str | Path, data: Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnist_lab", *map(str, args)],
        cwd=cwd,
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Exit `code`, no traceback, and exactly one line on stderr that says each fragment."""
    assert "Traceback" not in proc.stderr + proc.stdout, f"a traceback escaped:\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert proc.returncode == code, f"exit status {proc.returncode}, expected {code}: {lines[0]}"
    for fragment in fragments:
        assert fragment in lines[0], f"the error does not say {fragment!r}: {lines[0]}"
    return lines[0]


# --- the three commands -------------------------------------------------------------------------------------


def test_train_writes_the_json_record_and_the_weights(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    """Batches of 2 make 100 minibatches in the epoch, so the loss log gets its one row."""
    args = ["train", "--epochs", "1", "--batch-size", "2", "--warmup", "0", "--seed", "7", "--device", "cpu"]
    args += ["--threads", "1"]
    proc = run_cli(*args, "--json", "out.json", "--save", "w.pt", data=mnist_folder[0], cwd=tmp_path)
    assert proc.returncode == 0, f"train failed with exit status {proc.returncode}:\n{proc.stderr}"
    header = proc.stdout.splitlines()[0]
    assert "batch_size=2, schedule='linear', warmup=0)" in header, f"the options did not reach the recipe: {header}"
    assert proc.stderr == "", f"a successful run wrote to stderr:\n{proc.stderr}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "w.pt"], "stray or temporary files"

    record = json.loads((tmp_path / "out.json").read_text())
    required = {"test_accuracy", "epochs", "seed", "device", "recipe", "torch_version", "epoch_seconds", "loss_log"}
    assert required <= set(record), f"the record lacks {sorted(required - set(record))}"
    expected = {"epochs": 1, "seed": 7, "device": "cpu", "recipe": "default", "torch_version": torch.__version__}
    assert {k: record[k] for k in expected} == expected
    assert 0 <= record["test_accuracy"] <= 100, f"test accuracy {record['test_accuracy']} is not a percentage"
    assert len(record["epoch_seconds"]) == 1, f"one epoch, {len(record['epoch_seconds'])} timings"
    assert [row[:2] for row in record["loss_log"]] == [[1, 100]], f"loss log {record['loss_log']}"
    assert f"test accuracy: {record['test_accuracy']:.2f}%" in proc.stdout, "stdout and the record disagree"
    engine = record["engine"]
    assert (engine["engine"], engine["threads"]) == ("fast_cpu", 1), f"the record names the engine {engine}"
    assert engine["backward"] in fast_cpu.BACKWARDS, f"the record names no backward pass: {engine}"
    assert set(record["cpu"]) == {"model", "isa", "cores"}, f"the record's CPU: {record['cpu']}"
    assert record["cpu"]["isa"] == torch.backends.cpu.get_cpu_capability(), f"the record's ISA: {record['cpu']}"
    assert f"engine fast_cpu: backward pass {engine['backward']}, 1 thread" in proc.stdout, proc.stdout

    state = torch.load(tmp_path / "w.pt", weights_only=True)  # loadable without running code from the file
    assert set(state) == set(LeNet().state_dict()), "the saved state dict is not LeNet's"


def test_sweep_prints_each_seeds_accuracies_and_writes_the_distribution(
    mnist_folder: tuple[Path, dict], tmp_path: Path
) -> None:
    args = ["sweep", "--seeds", "3,5-6", "--epochs", "2", "--device", "cpu", "--json", "sweep.json"]
    proc = run_cli(*args, data=mnist_folder[0], cwd=tmp_path)
    assert proc.returncode == 0, f"sweep failed with exit status {proc.returncode}:\n{proc.stderr}"
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert [run["seed"] for run in record["runs"]] == [3, 5, 6], f"runs {record['runs']}"
    expected = {"recipe": "default", "epochs": 2, "device": "cpu", "torch_version": torch.__version__}
    assert {k: record[k] for k in expected} == expected
    for run in record["runs"]:
        assert len(run["epoch_test_accuracy"]) == 2, f"seed {run['seed']}: {run['epoch_test_accuracy']}"
        assert run["test_accuracy"] == run["epoch_test_accuracy"][-1], f"seed {run['seed']}: final is not the last"
        line = f"seed {run['seed']:>4}: " + " ".join(f"{a:6.2f}" for a in run["epoch_test_accuracy"])
        assert line in proc.stdout, f"stdout lacks {line!r}:\n{proc.stdout}"
    finals = [run["test_accuracy"] for run in record["runs"]]
    summary = record["summary"]
    assert (summary["runs"], summary["min"], summary["max"]) == (3, min(finals), max(finals)), summary
    assert summary["printed"] is None, "no accuracy was printed for 2 epochs, yet the summary names one"
    assert "3 seeds: test accuracy min" in proc.stdout, proc.stdout


def test_evaluate_reports_the_accuracy_of_saved_weights(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = LeNet()
    save_weights(net, tmp_path / "w.pt")
    expected = evaluate(net, *load_tensors("testing", mnist_folder[0]))
    proc = run_cli("evaluate", "--weights", "w.pt", "--device", "cpu", data=mnist_folder[0], cwd=tmp_path)
    assert proc.returncode == 0, f"evaluate failed with exit status {proc.returncode}:\n{proc.stderr}"
    assert f"test accuracy: {expected:.2f}%" in proc.stdout, f"expected {expected:.2f}%, got:\n{proc.stdout}"


def test_show_draws_the_digit_and_its_label(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    folder, written = mnist_folder
    proc = run_cli("show", "--dataset", "training", "--index", "42", data=folder, cwd=tmp_path)
    assert proc.returncode == 0, f"show failed with exit status {proc.returncode}:\n{proc.stderr}"
    label = int(written["training"][1][42])
    assert f"training image 42: label {label}" in proc.stdout, f"label {label} not reported:\n{proc.stdout}"
    drawing = proc.stdout.splitlines()[:28]
    assert [len(row) for row in drawing] == [56] * 28, "the digit is not drawn as 28 rows of 28 double characters"


# --- bad data and bad arguments: one line, no traceback ------------------------------------------------------


def test_corrupt_data_file_is_one_line_naming_it(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    data = tmp_path / "mnist"
    data.mkdir()
    for source in mnist_folder[0].iterdir():
        (data / source.name).write_bytes(source.read_bytes())
    broken = data / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-12])
    proc = run_cli("show", "--dataset", "testing", data=data, cwd=tmp_path)
    assert_one_line_error(proc, 1, str(broken))


def test_bad_option_is_one_line_exit_2_without_usage(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    proc = run_cli("train", "--batch-size", "0", data=mnist_folder[0], cwd=tmp_path)
    line = assert_one_line_error(proc, 2, "--batch-size")
    assert "usage" not in line.lower(), f"a usage dump instead of one clear line: {line}"


def test_evaluate_refuses_weights_that_would_run_code(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"conv1.weight": CodeRunningPickle(marker)}, tmp_path / "evil.pt")
    proc = run_cli("evaluate", "--weights", "evil.pt", "--device", "cpu", data=mnist_folder[0], cwd=tmp_path)
    assert_one_line_error(proc, 1, "evil.pt", "refused")
    assert not marker.exists(), "evaluate ran code from the weights file"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, list[str]]:
    """`cli.main(argv)` in this process: exit status (argparse's SystemExit included) and stderr's lines."""
    try:
        code: int | str | None = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err.splitlines()


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading data, loading weights or training fail the test: options must be judged before any of them."""

    def forbidden(what: str) -> Callable[..., None]:
        def fail(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"{what} started before the options were checked")

        return fail

    monkeypatch.setattr(cli, "load_tensors", forbidden("loading data"))
    monkeypatch.setattr(cli, "load_weights", forbidden("loading weights"))
    monkeypatch.setattr(cli, "train", forbidden("training"))
    monkeypatch.setattr(cli, "train_many", forbidden("training"))


BAD_OPTIONS = {
    "negative epochs": (["train", "--epochs", "-1"], "--epochs"),
    "zero epochs": (["train", "--epochs", "0"], "--epochs"),
    "epochs not a number": (["train", "--epochs", "three"], "--epochs"),
    "batch size 0": (["train", "--batch-size", "0"], "--batch-size"),
    "learning rate 0": (["train", "--lr", "0"], "--lr"),
    "learning rate nan": (["train", "--lr", "nan"], "--lr"),
    "momentum 1": (["train", "--momentum", "1"], "--momentum"),
    "negative warm-up": (["train", "--warmup", "-1"], "--warmup"),
    "zero threads": (["train", "--threads", "0"], "--threads"),
    "negative seed": (["train", "--seed", "-1"], "--seed"),
    "unknown device": (["train", "--device", "tpu"], "--device"),
    "unknown recipe": (["train", "--recipe", "fast"], "--recipe"),
    "--json into a missing folder": (["train", "--json", "{tmp}/missing/out.json"], "--json"),
    "--save into a missing folder": (["train", "--save", "{tmp}/missing/w.pt"], "--save"),
    "--json is a folder": (["train", "--json", "{tmp}"], "--json"),
    "--json and --save the same file": (["train", "--json", "{tmp}/x", "--save", "{tmp}/x"], "--save"),
    "evaluate without --weights": (["evaluate"], "--weights"),
    "evaluate on an unknown device": (["evaluate", "--weights", "w.pt", "--device", "gpu"], "--device"),
    "show an unknown dataset": (["show", "--dataset", "validation"], "--dataset"),
    "show a non-number index": (["show", "--index", "abc"], "--index"),
    "--png into a missing folder": (["show", "--png", "{tmp}/missing/digit.png"], "--png"),
    "sweep reversed seeds": (["sweep", "--seeds", "5-2"], "--seeds"),
    "sweep no seeds": (["sweep", "--seeds", ","], "--seeds"),
    "sweep seeds not numbers": (["sweep", "--seeds", "a-b"], "--seeds"),
    "sweep too many seeds": (["sweep", "--seeds", "0-100000"], "--seeds"),
    "sweep a seed twice": (["sweep", "--seeds", "1,1"], "--seeds"),
    "sweep an unknown engine": (["sweep", "--engine", "threads"], "--engine"),
    "sweep --json into a missing folder": (["sweep", "--json", "{tmp}/missing/sweep.json"], "--json"),
    "unknown command": (["fly"], "fly"),
    "no command": ([], "command"),
}


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_options_exit_2_with_one_line_before_any_work(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, option = BAD_OPTIONS[case]
    code, lines = run_main([arg.format(tmp=tmp_path) for arg in argv], capsys)
    assert code == 2, f"{case}: exit status {code}, expected 2; stderr {lines}"
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {lines}"
    assert option in lines[0], f"{case}: the error does not name {option}: {lines[0]}"
    assert list(tmp_path.iterdir()) == [], f"{case}: files were written: {list(tmp_path.iterdir())}"


@NO_CUDA
@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("command", [["train"], ["sweep"], ["evaluate", "--weights", "w.pt"]])
def test_device_cuda_without_gpu_exits_2_before_any_work(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_main([*command, "--device", "cuda"], capsys)
    assert code == 2, f"exit status {code}, expected 2; stderr {lines}"
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert "cuda" in lines[0].lower(), f"the error does not mention CUDA: {lines[0]}"


@pytest.mark.parametrize("via", ["--data", DATA_ENV])
def test_missing_data_folder_is_one_line_saying_where_and_how(
    via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-mnist-here"
    monkeypatch.setenv(DATA_ENV, str(missing))
    code, lines = run_main(["show", *(["--data", str(missing)] if via == "--data" else [])], capsys)
    assert code == 1, f"exit status {code}, expected 1; stderr {lines}"
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    for fragment in (str(missing), "--data", DATA_ENV):
        assert fragment in lines[0], f"the error does not say {fragment!r}: {lines[0]}"


def test_evaluate_names_the_parameter_of_the_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = LeNet().state_dict()
    state["conv2.weight"] = torch.zeros(16, 6, 3, 3)
    torch.save(state, tmp_path / "w.pt")
    code, lines = run_main(["evaluate", "--weights", str(tmp_path / "w.pt"), "--device", "cpu"], capsys)
    assert code == 1, f"exit status {code}, expected 1; stderr {lines}"
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert "conv2.weight" in lines[0], f"the error does not name the parameter: {lines[0]}"


# --- Ctrl-C -------------------------------------------------------------------------------------------------

# `python -m mnist_lab`, but with Python's own SIGINT handler even where the test runner's process ignores SIGINT
# (a child inherits "ignored", and Python then installs no KeyboardInterrupt handler).
LAUNCH_WITH_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('mnist_lab', run_name='__main__', alter_sys=True)"
)


def wait_for_line(proc: subprocess.Popen[str], lines: queue.Queue[str], pattern: str, timeout: float) -> None:
    """Wait until the process prints a line matching `pattern`; fail early if it exits or prints a traceback."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if proc.poll() is not None:
                pytest.fail(f"the process exited with status {proc.returncode} before printing {pattern!r}")
            continue
        assert "Traceback" not in line, f"the process failed: {line}"
        if re.match(pattern, line):
            return
    pytest.fail(f"no line matching {pattern!r} within {timeout} s")


def test_ctrl_c_during_training_ends_cleanly_and_keeps_old_outputs(
    mnist_folder: tuple[Path, dict], tmp_path: Path
) -> None:
    (tmp_path / "out.json").write_text("previous results\n")
    (tmp_path / "w.pt").write_bytes(b"previous weights")
    args = ["train", "--epochs", "100000", "--device", "cpu", "--json", "out.json", "--save", "w.pt"]
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH_WITH_SIGINT, *args],
        cwd=tmp_path,
        env=cli_env(mnist_folder[0]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        wait_for_line(proc, lines, r"epoch \d+:", timeout=60)  # training is under way
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line_error(result, 130, "interrupted")
    assert (tmp_path / "out.json").read_text() == "previous results\n", "the --json target was replaced or truncated"
    assert (tmp_path / "w.pt").read_bytes() == b"previous weights", "the --save target was replaced or truncated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "w.pt"], "temporary files were left behind"


def test_a_reader_that_stops_reading_is_a_normal_end(mnist_folder: tuple[Path, dict], tmp_path: Path) -> None:
    """`python -m mnist_lab show | head -3`: the pipe closes before the digit is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_lab", "show", "--index", "3"],
        cwd=tmp_path, env=cli_env(mnist_folder[0]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # before the command has written anything: it is still importing torch
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, f"exit status {proc.returncode} on a closed pipe; stderr:\n{stderr}"
    assert stderr == "", f"a closed pipe put this on stderr:\n{stderr}"


def test_errors_that_are_not_bad_input_are_not_called_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 says "your arguments": a bug (torch's own ValueError, an IndexError) keeps its traceback."""
    for error in (ValueError("a bug in the package"), IndexError("another")):

        def broken(args: object, error: Exception = error) -> None:
            raise error

        monkeypatch.setattr(cli, "_show", broken)
        with pytest.raises(type(error), match=str(error)):
            cli.main(["show"])
    capsys.readouterr()
