"""Reading a student's notebook without running it (spec/harness/notebook.py): what runs, what is skipped and why,
and the one-line reasons a graded name can be missing. In-process and quick; meta_tests/test_grading.py grades
whole misbehaving notebooks end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spec.harness import notebook
from spec.meta_tests.broken.mistakes import SOLUTION
from spec.sandbox.remote import RemoteFunction

nbformat = pytest.importorskip("nbformat")  # in the test extra; grading needs it

_built: list[notebook.Notebook] = []


@pytest.fixture(autouse=True)
def _stop_workers():
    """Each notebook built here has a worker: stop them after the test."""
    yield
    while _built:
        _built.pop().worker.close()


def build(plan: notebook.Plan) -> notebook.Notebook:
    """The notebook's definitions, built in a worker that is stopped after the test."""
    _built.append(notebook.build(plan))
    return _built[-1]


def write_notebook(folder: Path, *sources: str, name: str = "student.ipynb") -> Path:
    """A notebook of these code cells, a markdown cell first (so cell numbers count it, as Jupyter's list does)."""
    cells = [nbformat.v4.new_markdown_cell("# A student's notebook")]
    cells += [nbformat.v4.new_code_cell(source, execution_count=n) for n, source in enumerate(sources, 1)]
    path = folder / name
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def run_names(plan: notebook.Plan) -> set[str]:
    return {name for s in plan.run for name in s.binds}


def test_the_printed_solution_runs_its_imports_and_definitions_only() -> None:
    plan = notebook.plan(SOLUTION)
    assert {"normalize_MNIST_images", "LeNet", "backprop_deep", "np", "torch", "nn", "F", "MNISTtools"} <= run_names(
        plan
    ), f"runs {sorted(run_names(plan))}"
    skipped = {entry.code for entry in plan.skipped}
    for code in ("backprop_deep(xtrain, ltrain, net, T=3)", "xtrain = torch.from_numpy(xtrain)", "%matplotlib inline"):
        assert code in skipped, f"`{code}` is not among the skipped statements"
    assert all(s.defines for s in plan.run), "an assignment runs that no definition needs"


def test_an_assignment_a_definition_needs_runs_and_one_that_needs_data_does_not(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path,
        "import torch\nimport MNISTtools",
        "device = 'cuda' if torch.cuda.is_available() else 'cpu'\nSCALE = 2 / 255",
        "xtrain, ltrain = MNISTtools.load(path='./datasets/MNIST')\nN = xtrain.shape[0]",
        "def normalize_MNIST_images(x):\n    return (x * SCALE - 1).astype('float32')\n\n"
        "def backprop_deep(xtrain, ltrain, net, T):\n    return N, device",
    )
    plan = notebook.plan(path)
    assert {"device", "SCALE"} <= run_names(plan), f"needed assignments not run: runs {sorted(run_names(plan))}"
    assert not {"xtrain", "N"} & run_names(plan), "an assignment that loads data runs"
    reasons = {entry.code: entry.reason for entry in plan.skipped}
    assert "loads data or trains" in reasons["xtrain, ltrain = MNISTtools.load(path='./datasets/MNIST')"]
    built = build(plan)
    assert {"device", "SCALE"} <= built.names, f"the worker's module binds {sorted(built.names)}"
    normalised = RemoteFunction(built.worker, "normalize_MNIST_images")(np.array([0, 255], dtype=np.uint8))
    assert normalised.tolist() == [-1.0, 1.0], f"SCALE is not 2 / 255: {normalised}"
    missing = built.skipped_binding("N")
    assert missing is not None, "N is not reported as bound by skipped code"
    assert missing.where == "cell 4 (In [3]), line 2", f"N is bound by {missing}"


def test_magics_shell_and_help_lines_are_skipped_and_the_rest_of_the_cell_runs(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path,
        "%matplotlib inline\n!pip install nothing\nfiles = !ls\nimport numpy as np\nnp?\n"
        "def normalize_MNIST_images(x):\n    return x\n",
        "%%time\ndef LeNet():\n    pass",
    )
    plan = notebook.plan(path)
    assert "normalize_MNIST_images" in run_names(plan)
    reasons = {entry.code: entry.reason for entry in plan.skipped}
    for line in ("%matplotlib inline", "!pip install nothing", "files = !ls", "np?"):
        assert "magic" in reasons[line], f"`{line}`: {reasons.get(line)}"
    assert "cell magic" in reasons["%%time"]


def test_a_cell_that_does_not_parse_is_skipped_naming_what_it_would_define(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path, "import torch", "class LeNet(torch.nn.Module:\n    pass", "def helper():\n    return 1"
    )
    built = build(notebook.plan(path))
    assert "helper" in built.names, "a cell after the broken one did not run"
    message = built.missing("LeNet")
    assert message.startswith("LeNet is not defined in student.ipynb: cell 3 (In [2]), line 1"), message
    assert "SyntaxError" in message, message
    assert "\n" not in message, message


def test_a_statement_that_raises_on_import_is_reported_and_the_rest_runs(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path, "import no_such_module_anywhere", "class LeNet(nn.Module):\n    pass", "x = 1\ndef f():\n    return x"
    )
    built = build(notebook.plan(path))
    assert RemoteFunction(built.worker, "f")() == 1
    assert "raised NameError: name 'nn' is not defined when the notebook was imported" in built.missing("LeNet")
    assert [entry.code for entry in built.failed] == ["import no_such_module_anywhere", "class LeNet(nn.Module):"]


def test_a_name_no_code_binds() -> None:
    built = notebook.build(notebook.plan(SOLUTION))
    message = built.missing("train_lenet")
    assert message == "train_lenet is not defined in printed_solution.ipynb: no top-level def, class or import binds it"


def test_mnisttools_serves_the_embedded_data_whatever_the_path(tmp_path: Path) -> None:
    tools = notebook.course_tools()
    images, labels = tools.load(dataset="testing", path=str(tmp_path / "no" / "such" / "folder"))
    assert images.shape == (784, 10_000), f"images of shape {images.shape}"
    assert labels.shape == (10_000,), f"labels of shape {labels.shape}"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"hello", "is not a Jupyter notebook"), (b'{"cells": 3}', "is not a Jupyter notebook"), (b"\xff\xfe", "cannot")],
)
def test_a_file_that_is_not_a_notebook_is_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "their.ipynb"
    path.write_bytes(content)
    with pytest.raises(notebook.NotebookError, match=reason) as caught:
        notebook.plan(path)
    assert "\n" not in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("their.ipynb"), str(caught.value)


def test_a_script_is_one_cell_with_its_own_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "their.py"
    path.write_text("import torch\nprint('hi')\n\ndef backprop_deep(xtrain, ltrain, net, T):\n    return T\n")
    plan = notebook.plan(path)
    assert "backprop_deep" in run_names(plan)
    assert [(entry.where, entry.code) for entry in plan.skipped] == [("line 2", "print('hi')")]
