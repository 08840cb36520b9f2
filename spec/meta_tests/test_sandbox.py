"""The sandboxed worker (spec/sandbox): what it sends back, how it fails, and what it keeps out.

Each test builds a small script's definitions in a worker of its own, under bubblewrap and as a plain
process (the fallback where bubblewrap cannot run), and asks it what grading asks. test_tamper.py grades
whole notebooks that try to cheat.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spec.harness import notebook, prepared
from spec.package_tests.support import REPO
from spec.sandbox import bounds, client, containment, wire
from spec.sandbox.errors import CallError
from spec.sandbox.remote import RemoteFunction

SANDBOXES = [
    pytest.param(containment.Bubblewrap, id="bubblewrap", marks=pytest.mark.skipif(
        not containment.choose().isolated, reason="bubblewrap is not installed, or cannot run here")),
    pytest.param(containment.PlainProcess, id="process"),
]  # fmt: skip
HEADER = "import os, sys, time, socket\nimport numpy as np\nimport torch\n"
pytestmark = pytest.mark.grading  # a worker a test, started as grading starts one


@pytest.fixture(params=SANDBOXES)
def sandbox(request: pytest.FixtureRequest) -> containment.Containment:
    return request.param()


@pytest.fixture
def script(tmp_path: Path, sandbox: containment.Containment) -> Iterator[callable]:
    """`script(source)`: the source's definitions, built in a worker of `sandbox`'s kind; stopped afterwards."""
    workers: list[client.Worker] = []

    def build(source: str) -> notebook.Notebook:
        path = tmp_path / "student.py"
        path.write_text(HEADER + source)
        built = _built(path, sandbox, tmp_path)
        workers.append(built.worker)
        return built

    yield build
    for worker in workers:
        worker.close()


def _built(path: Path, sandbox: containment.Containment, hidden: Path) -> notebook.Notebook:
    """A script's definitions, built in a worker of `sandbox`'s kind that cannot see `hidden`."""
    return notebook.build(notebook.plan(path), client.Worker(hidden=[hidden], sandbox=sandbox))


def call(built: notebook.Notebook, name: str, *args: object, timeout: float = 60) -> object:
    return RemoteFunction(built.worker, name, timeout=timeout)(*args)


def test_a_call_returns_its_array_exactly(script) -> None:
    built = script("def f(x):\n    return (x * 2).astype(np.float32)")
    out = call(built, "f", np.arange(4, dtype=np.uint8))
    assert type(out) is np.ndarray, f"got a {type(out)}"
    assert out.dtype == np.float32, f"dtype {out.dtype}"
    assert out.tolist() == [0, 2, 4, 6], f"values {out}"


@pytest.mark.parametrize(
    ("returns", "words"),
    [
        ("class Always(np.ndarray):\n    def __eq__(self, other):\n        return True\n"
         "def f(x):\n    return np.zeros(3).view(Always)", "which is not plain data"),
        ("class Liar(torch.Tensor):\n    @classmethod\n    def __torch_function__(cls, *a, **k):\n        return True\n"
         "def f(x):\n    return torch.zeros(3).as_subclass(Liar)", "which is not plain data"),
        ("def f(x):\n    return object()", "builtins.object, which is not plain data"),
        ("def f(x):\n    return np.array([object()])", "an array of object, not of numbers"),
    ],
    ids=["ndarray subclass", "tensor subclass", "object", "object array"],
)  # fmt: skip
def test_what_is_not_plain_data_fails_in_one_line(script, returns: str, words: str) -> None:
    built = script(returns)
    with pytest.raises(CallError, match=f"^f .*{words}") as failed:
        call(built, "f", np.zeros(1))
    assert "\n" not in str(failed.value), str(failed.value)


def test_an_exception_comes_back_under_its_own_name_with_where_it_was_raised(script) -> None:
    built = script("def f(x):\n    return x @ np.ones((5, 5))")
    with pytest.raises(ValueError, match="matmul") as raised:
        call(built, "f", np.ones((2, 3)))
    assert raised.value.student_location == "line 5, in f", raised.value.student_location


def test_exit_is_a_failure_naming_the_function(script) -> None:
    built = script("def f(x):\n    sys.exit(3)")
    with pytest.raises(CallError, match=r"^f called exit\(\) or sys.exit\(3\) at line 5, in f"):
        call(built, "f", 1)


def test_a_worker_that_dies_is_named_and_the_next_call_gets_a_fresh_one(script) -> None:
    built = script("def dies(x):\n    os._exit(7)\ndef lives(x):\n    return x + 1")
    with pytest.raises(CallError, match=r"^dies ended the worker: it exited with code 7"):
        call(built, "dies", 1)
    assert call(built, "lives", 1) == 2, "the definitions were not replayed in a fresh worker"
    assert built.worker.generation == 2, f"{built.worker.generation} workers started, not 2"


def test_a_call_past_its_time_limit_stops_the_worker(script) -> None:
    built = script("def hangs(x):\n    while True:\n        pass")
    with pytest.raises(CallError, match=r"^hangs did not return within 2 s; the worker was stopped"):
        call(built, "hangs", 1, timeout=2)
    assert built.worker.proc is None, "the worker was not stopped"


def test_output_written_past_python_to_fd_1_stops_at_the_file_limit(script) -> None:
    """fd 1 is a file in the worker's folder, not the reply pipe; past FILE_LIMIT its writes fail (Python
    ignores SIGXFSZ), and the failure names the student's line."""
    built = script("def floods(x):\n    while True:\n        os.write(1, b'x' * (1 << 20))")
    with pytest.raises(OSError, match="File too large") as raised:
        call(built, "floods", 1)
    assert raised.value.student_location == "line 6, in floods", raised.value.student_location


def test_printing_past_the_limit_is_a_flood(script) -> None:
    built = script("def prints(x):\n    print('y' * 2_000_000)")
    with pytest.raises(CallError, match=r"^prints flooded stdout: 2,000,001 characters"):
        call(built, "prints", 1)


def test_the_reference_package_and_the_spec_cannot_be_imported(script) -> None:
    built = script("def f(x):\n    import mnist_lab\n    return 1\ndef g(x):\n    import spec\n    return 1")
    for name in ("f", "g"):
        with pytest.raises(ImportError):
            call(built, name, 1)


@pytest.mark.skipif(not containment.choose().isolated, reason="bubblewrap is not installed, or cannot run here")
@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("    return open(x).read()", "reads the checkout"),
        ("    open(x, 'w').write('pwned')", "writes into the checkout"),
        ("    return os.listdir(os.path.dirname(x))", "lists the submission's folder"),
    ],
)  # fmt: skip
def test_under_bubblewrap_the_worker_cannot(tmp_path: Path, body: str, what: str) -> None:
    path = tmp_path / "student.py"
    path.write_text(HEADER + "def f(x):\n" + body)
    (tmp_path / "classmate.ipynb").write_text("{}")
    worker = _built(path, containment.Bubblewrap(), tmp_path).worker
    try:
        target = str(REPO / "README.md") if "checkout" in what else str(tmp_path / "classmate.ipynb")
        before = (REPO / "README.md").read_text()
        try:
            got = RemoteFunction(worker, "f", timeout=60)(target)
        except OSError:
            got = None
        assert got in (None, []), f"the worker {what}: {str(got)[:80]}"
        assert (REPO / "README.md").read_text() == before, "the checkout's README changed"
    finally:
        worker.close()


def test_a_message_refuses_object_arrays_and_oversized_ones() -> None:
    buffer = io.BytesIO()
    wire.send(buffer, {"x": np.arange(3)})
    raw = buffer.getvalue()
    assert wire.receive(io.BytesIO(raw))["x"].tolist() == [0, 1, 2], "an array does not survive its message"
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.receive(io.BytesIO(raw), limit=8)
    with pytest.raises(wire.WireError, match="cannot send a object"):
        wire.send(io.BytesIO(), {"x": object()})
    for layout in (["|O", [1]], ["<f4", [-1]], ["[('a', '<f4')]", [1]], "nonsense"):
        header = json.dumps({"message": {"x": {"__array__": 0}}, "arrays": [layout]}).encode()
        with pytest.raises(wire.WireError, match="an array"):
            wire.receive(io.BytesIO(len(header).to_bytes(8, "big") + header + b"\0" * 64))


def test_the_worker_runs_apart_from_the_grader(script) -> None:
    built = script("def f(x):\n    return [os.getpid(), os.getcwd()]")
    pid, cwd = call(built, "f", 0)
    assert pid != os.getpid(), "the worker is the grader's own process"
    assert Path(cwd).resolve() != Path.cwd().resolve(), f"the worker runs in the grader's folder {cwd}"
    assert str(REPO) not in cwd, f"the worker runs inside the checkout: {cwd}"


@pytest.mark.skipif(not containment.choose().isolated, reason="bubblewrap is not installed, or cannot run here")
def test_under_bubblewrap_the_worker_cannot_reach_a_server_on_this_machine(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        path = tmp_path / "student.py"
        path.write_text(HEADER + "def f(port):\n    socket.create_connection(('127.0.0.1', port), timeout=2)\n")
        built = _built(path, containment.Bubblewrap(), tmp_path)
        try:
            with pytest.raises(OSError, match=r"unreachable|refused"):
                RemoteFunction(built.worker, "f", timeout=60)(port)
        finally:
            built.worker.close()
        with pytest.raises(TimeoutError):
            server.accept()  # nobody came


@pytest.mark.skipif("pids" not in bounds.cgroup_controllers(), reason="no pids cgroup can be made here (v1, as root)")
def test_a_fork_bomb_stops_at_the_process_limit(script) -> None:
    built = script(
        "def forks(x):\n    children = 0\n    try:\n        while children < 2000:\n"
        "            if os.fork() == 0:\n                time.sleep(30)\n                os._exit(0)\n"
        "            children += 1\n    except OSError:\n        pass\n    return children"
    )
    children = call(built, "forks", 0)
    assert 0 < children < bounds.PROCESSES, f"the worker forked {children} children; the limit is {bounds.PROCESSES}"


@pytest.mark.skipif("memory" not in bounds.cgroup_controllers(), reason="no memory cgroup can be made here (v1, root)")
def test_memory_past_the_cgroup_limit_kills_the_worker_and_says_so(script, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 800 << 20  # bytes resident: importing torch takes about 300 MB; RLIMIT_DATA (8 GB) is far off
    monkeypatch.setitem(bounds.LIMITS, "memory", limit)
    built = script("def grab(gigabytes):\n    return float(np.ones(int(gigabytes * 2**27)).sum())")
    assert call(built, "grab", 0.25) == 2**25, "a grab under the limit did not come back whole"
    with pytest.raises(CallError, match=r"^grab ended the worker: it was killed \(SIGKILL: out of memory"):
        call(built, "grab", 1.5)
    assert built.worker.proc is None, "the worker was not stopped"


@pytest.fixture(scope="module")
def prepared_testing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The testing split prepared as grading prepares MNIST (spec/harness/prepared.py)."""
    folder = tmp_path_factory.mktemp("mnist")
    prepared.prepare(folder, "testing")
    return folder


@pytest.mark.parametrize("sandbox", [containment.Bubblewrap(), containment.PlainProcess()], ids=lambda s: s.name)
def test_only_a_bubblewrapped_worker_is_handed_the_prepared_file_itself(
    prepared_testing: Path, sandbox: containment.Containment
) -> None:
    images, _ = prepared.tensors(prepared_testing, "testing")
    file = str(prepared.path(prepared_testing, "testing", "images"))
    worker = client.Worker(hidden=[], sandbox=sandbox, data=prepared_testing)
    try:
        sent = worker.tensor(images)[wire.FILE]
        if sandbox.isolated:  # bound read-only: one page cache for every process, no copy
            assert sent == file, f"the prepared images went as {sent}, not as {file}"
        else:  # a worker of this user could change the file for every notebook after it
            assert Path(sent).parent == worker.folder, f"a plain worker was handed {sent}"
        for other in (images[:5000], images.clone().add_(1)):
            assert worker.tensor(other)[wire.FILE] != file, "a part or a changed copy went as the whole file"
    finally:
        worker.close()


@pytest.mark.skipif(not containment.choose().isolated, reason="bubblewrap is not installed, or cannot run here")
def test_a_bubblewrapped_worker_maps_the_prepared_file_and_cannot_change_it(prepared_testing: Path) -> None:
    path = prepared_testing / "student.py"
    path.write_text(HEADER + "def f(x, file):\n    x += 1\n    try:\n        open(file, 'r+b').write(b'pwned')\n"
                    "    except OSError as err:\n        return [float(x.sum()), type(err).__name__]\n"
                    "    return [float(x.sum()), 'wrote']\n")  # fmt: skip
    images, _ = prepared.tensors(prepared_testing, "testing")
    file = prepared.path(prepared_testing, "testing", "images")
    before = file.read_bytes()
    worker = client.Worker(hidden=[path.parent / "hidden"], sandbox=containment.Bubblewrap(),
                           data=prepared_testing)  # fmt: skip
    built = notebook.build(notebook.plan(path), worker)
    try:
        total, wrote = RemoteFunction(built.worker, "f", timeout=60)(images, str(file))
        assert wrote != "wrote", "the worker wrote into the prepared MNIST"
        want = float(images.double().sum()) + images.numel()
        assert total == pytest.approx(want, rel=1e-5), f"the worker saw images summing to {total}, not {want}"
        assert file.read_bytes() == before, "the prepared file changed"
        assert not list(worker.folder.glob("data-*.npy")), "the images were copied into the worker's folder"
    finally:
        built.worker.close()


def test_a_workers_cgroup_goes_beneath_the_graders_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "CGROUPS", tmp_path)
    (tmp_path / "memory" / "docker" / "abc").mkdir(parents=True)
    nested = bounds.cgroup_parent("memory", "5:pids:/\n4:memory:/docker/abc\n0::/\n")
    assert nested == tmp_path / "memory" / "docker" / "abc", f"beneath {nested}, not the grader's own cgroup"
    unmounted = bounds.cgroup_parent("memory", "4:memory:/elsewhere\n")
    assert unmounted == tmp_path / "memory", f"beneath {unmounted}, not the root where the own one is not mounted"
    (tmp_path / "pids" / "docker" / "abc").mkdir(parents=True)
    combined = bounds.cgroup_parent("pids", "7:cpu,pids:/docker/abc\n")
    assert combined == tmp_path / "pids" / "docker" / "abc", f"{combined}: a controller listed with others was missed"


PROBE = """
def probe(paths):
    seen = []
    for p in paths:
        try:
            seen.append(sorted(os.listdir(p)) if os.path.isdir(p) else len(open(p, 'rb').read()))
        except OSError as err:
            seen.append(type(err).__name__)
    return seen
"""


@pytest.mark.skipif(not containment.choose().isolated, reason="bubblewrap is not installed, or cannot run here")
def test_a_bubblewrapped_worker_reads_no_mnist_but_what_it_is_handed(
    prepared_testing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy of MNIST the grader knows is readable from a worker, in a checkout or where an installed wheel's
    site-packages is shown to it (a venv under /tmp, as the autograder's): with the test labels, a notebook
    could answer the test set without training."""
    import mnist_lab.data

    site = tmp_path / "venv" / "lib" / "site-packages"
    wheel = site / "mnist_lab" / "embedded_mnist"
    wheel.mkdir(parents=True)
    (wheel / "t10k-labels-idx1-ubyte.gz").write_bytes(b"the test labels")
    monkeypatch.setattr(mnist_lab.data, "INSTALLED_DATA", wheel)
    shown = containment.interpreter_paths()
    monkeypatch.setattr(containment, "interpreter_paths", lambda: [*shown, str(site)])
    path = tmp_path / "student.py"
    path.write_text(HEADER + PROBE)
    labels, images = (prepared.path(prepared_testing, "testing", part) for part in ("labels", "images"))
    places = {"site-packages": site / "mnist_lab", "the wheel's MNIST": wheel, "the checkout's MNIST":
              mnist_lab.data.EMBEDDED_DATA, "the prepared test labels": labels, "the prepared test images": images}
    worker = client.Worker(hidden=[tmp_path / "submission"], sandbox=containment.Bubblewrap(), data=prepared_testing)
    built = notebook.build(notebook.plan(path), worker)
    try:
        found = RemoteFunction(built.worker, "probe", timeout=60)([str(p) for p in places.values()])
        seen = dict(zip(places, found, strict=True))
    finally:
        built.worker.close()
    assert seen["site-packages"] == ["embedded_mnist"], f"the venv's site-packages was not shown as it is: {seen}"
    assert seen["the prepared test images"] == images.stat().st_size, f"the images handed out were not: {seen}"
    for place in ("the wheel's MNIST", "the checkout's MNIST", "the prepared test labels"):
        assert seen[place] in ([], "FileNotFoundError", "PermissionError"), f"{place} was readable: {seen[place]}"
