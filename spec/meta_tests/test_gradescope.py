"""Gradescope's autograder (spec/gradescope): the rubric, results.json against Gradescope's specification
(results.schema.json), and the built zip's run_autograder on a folder laid out as /autograder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spec.gradescope import results as gradescope_results
from spec.gradescope.build import build, torch_version
from spec.gradescope.rubric import GRADED, Rubric, RubricError
from spec.meta_tests.broken.mistakes import FOLDER as BROKEN
from spec.meta_tests.broken.mistakes import MISTAKES, RUNS, SOLUTION
from spec.reports.verdicts import NotebookResult, QuestionVerdict
from spec.sandbox import client

GRADESCOPE_MEMORY = 1536 << 20  # bytes: Gradescope's "1.0 CPU, 1.5 GB" setting, the least that grades the solution
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("nbformat")


def valid(data: dict) -> dict:
    """`data`, after checking it against Gradescope's specification (results.schema.json)."""
    errors = sorted(jsonschema.Draft202012Validator(gradescope_results.schema()).iter_errors(data), key=str)
    assert not errors, f"results.json breaks Gradescope's specification: {errors[0].message} at {list(errors[0].path)}"
    return data


# --- the rubric -------------------------------------------------------------------------------------------


def test_the_default_rubric_is_a_point_a_graded_question_visible() -> None:
    rubric = Rubric()
    assert rubric.graded == GRADED, f"graded {rubric.graded}, not every graded question"
    assert rubric.total == len(GRADED), f"{rubric.total} points in all, not one a question"
    assert Rubric.from_dict({}) == rubric, "an empty rubric is not the default"


def test_a_rubric_round_trips_through_its_toml(tmp_path: Path) -> None:
    rubric = Rubric.from_dict({"graded": ["Q21", "Q31"], "default": {"points": 2},
                               "questions": {"Q31": {"points": 5, "visibility": "after_published"}}})  # fmt: skip
    path = tmp_path / "rubric.toml"
    path.write_text(rubric.to_toml())
    reread = Rubric.load(path)
    meaning = [(q, rubric.points_of(q), rubric.visibility_of(q)) for q in GRADED]
    assert reread.graded == rubric.graded, f"graded {reread.graded}, written {rubric.graded}"
    assert [(q, reread.points_of(q), reread.visibility_of(q)) for q in GRADED] == meaning, rubric.to_toml()
    assert (rubric.points_of("Q21"), rubric.points_of("Q31"), rubric.total) == (2, 5, 7), "points misread"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"graded": ["Q3"]}, "'Q3' is not a graded question"),
        ({"graded": []}, "graded must be a list of questions"),
        ({"default": {"points": -1}}, "default.points must be a number of points, 0 or more"),
        ({"questions": {"Q21": {"visibility": "everyone"}}}, "Q21.visibility must be one of hidden"),
        ({"questions": {"Q99": {"points": 1}}}, "'Q99' is not a graded question"),
        ({"point": 1}, "unknown key 'point'"),
    ],
)
def test_a_wrong_rubric_is_one_line_naming_the_problem(data: dict, words: str) -> None:
    with pytest.raises(RubricError, match=words.replace("(", r"\(").replace(".", r"\.")):
        Rubric.from_dict(data)


def test_a_rubric_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rubric.toml"
    path.write_text("graded = [Q21")
    with pytest.raises(RubricError, match=f"^{path}: "):
        Rubric.load(path)


# --- results.json -----------------------------------------------------------------------------------------


def verdict(question: str, outcome: str, message: str = "") -> QuestionVerdict:
    return QuestionVerdict(question, "title", True, outcome, message, {outcome: 1})


def test_results_give_each_graded_question_its_points_and_message() -> None:
    rubric = Rubric.from_dict({"graded": ["Q21", "Q26", "Q31"], "questions": {"Q26": {"points": 3}}})
    graded = NotebookResult(torch="2.13.0", sandbox="in a worker", questions=[
        verdict("Q21", "passed"), verdict("Q26", "failed", "conv1 has 5 output channels, not 6")])  # fmt: skip
    data = valid(gradescope_results.results(graded, rubric, seconds=12.34))
    tests = {t["number"]: t for t in data["tests"]}
    assert (tests["Q21"]["score"], tests["Q21"]["status"]) == (1, "passed"), tests["Q21"]
    assert (tests["Q26"]["score"], tests["Q26"]["max_score"], tests["Q26"]["status"]) == (0, 3, "failed"), tests["Q26"]
    assert tests["Q26"]["output"] == "conv1 has 5 output channels, not 6", tests["Q26"]["output"]
    assert tests["Q31"]["status"] == "failed", "a question with no verdict was not failed"
    assert "no verdict" in tests["Q31"]["output"], tests["Q31"]["output"]
    assert (data["score"], data["execution_time"]) == (1, 12.3), (data["score"], data["execution_time"])
    assert data["output"].startswith("1 of 3 questions passed: 1 of 5 points."), data["output"]


def test_a_submission_without_a_grade_is_a_visible_not_gradable_test() -> None:
    data = valid(gradescope_results.results(NotebookResult(error="not graded: pytest exited 3"), Rubric(), 1.0))
    assert data["score"] == 0, data
    assert [(t["name"], t["visibility"], t["output"]) for t in data["tests"]] == [
        ("Not gradable", "visible", "not graded: pytest exited 3")
    ], data["tests"]


# --- the built zip, run as Gradescope runs it ---------------------------------------------------------------


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "autograder.zip"
    build(out, Rubric(), torch_index=None)
    return out


def test_the_zip_holds_setup_run_autograder_rubric_wheel_and_spec(autograder_zip: Path) -> None:
    with zipfile.ZipFile(autograder_zip) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        setup = archive.read("setup.sh").decode()
        requirements = archive.read("requirements.txt").decode()
    for name in ("setup.sh", "run_autograder", "rubric.toml", "requirements.txt", "spec/gradescope/run.py",
                 "spec/questions/test_q21_normalize.py", "conftest.py", "pyproject.toml"):  # fmt: skip
        assert name in names, f"{name} is not in autograder.zip"
    assert any(n.startswith("mnist_lab-") and n.endswith(".whl") for n in names), "no mnist_lab wheel in the zip"
    assert not any(n.startswith("spec/meta_tests/") for n in names), "the spec's own tests were shipped"
    for name in ("setup.sh", "run_autograder"):
        assert modes[name] & 0o111, f"{name} is not executable in the zip ({modes[name]:o})"
    assert f"torch=={torch_version()}" in setup, f"setup.sh does not pin torch {torch_version()}"
    for tool in ("pytest", "pytest-timeout", "nbformat"):
        assert f"{tool}==" in requirements, f"{tool} is not pinned:\n{requirements}"


def lay_out(autograder_zip: Path, root: Path, submission: dict[str, bytes], rubric: Rubric | None = None) -> Path:
    """ROOT as Gradescope lays it out, the zip in source/, with this test run's Python as setup.sh's venv."""
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extractall(root / "source")
    for name in ("setup.sh", "run_autograder"):
        (root / "source" / name).chmod(0o755)
    (root / "source" / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    if rubric is not None:
        (root / "source" / "rubric.toml").write_text(rubric.to_toml())
    (root / "submission").mkdir()
    for name, content in submission.items():
        (root / "submission" / name).write_bytes(content)
    return root


def run_autograder(root: Path, cgroup: Path | None = None) -> dict:
    """run_autograder, with no network where a network namespace can be made (unshare), in `cgroup` if given."""
    command = [str(root / "run_autograder")]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0:
        command = ["unshare", "-n", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    # One torch thread: it runs beside the test workers, and torch's threads would fight for the cores.
    env.update(AUTOGRADER_ROOT=str(root), OMP_NUM_THREADS="1")
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False, preexec_fn=join)
    assert proc.returncode == 0, f"run_autograder exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
    return valid(json.loads((root / "results" / "results.json").read_text()))


@pytest.fixture
def gradescope_memory() -> Iterator[Path | None]:
    """A memory cgroup bounded as the Gradescope setting the docs name (GRADESCOPE_MEMORY), where one can be
    made (cgroup v1, as root); the sandboxed worker's own cgroup goes beneath it. None elsewhere."""
    usable = "memory" in client.cgroup_controllers()
    cgroup = client.bounded_cgroup("memory", "gradescope", GRADESCOPE_MEMORY) if usable else None
    try:
        yield cgroup
    finally:
        if cgroup is not None:
            client.remove_cgroup(cgroup)


@pytest.mark.grading
@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"notes.txt": b"hello"}, "no notebook (.ipynb) was submitted: only notes.txt"),
        ({"a.ipynb": SOLUTION.read_bytes(), "b.ipynb": SOLUTION.read_bytes()}, "2 notebooks were submitted"),
        ({"assignment2.ipynb": b"%PDF-1.4 not a notebook"}, "assignment2.ipynb"),
    ],
    ids=["no notebook", "two notebooks", "not a notebook"],
)
def test_what_cannot_be_graded_is_not_gradable_and_still_written(
    autograder_zip: Path, tmp_path: Path, files: dict[str, bytes], words: str
) -> None:
    data = run_autograder(lay_out(autograder_zip, tmp_path / "autograder", files))
    assert [t["name"] for t in data["tests"]] == ["Not gradable"], data["tests"]
    assert words in data["tests"][0]["output"], data["tests"][0]["output"]
    assert data["score"] == 0, data["score"]


@pytest.mark.grading
@pytest.mark.parametrize("mistake", ["normalize_to_0_1", "images_as_rows", "wrong_layer_size"])
def test_a_broken_notebook_loses_exactly_the_points_of_its_mistake(
    autograder_zip: Path, tmp_path: Path, mistake: str
) -> None:
    rubric = Rubric.from_dict({"graded": list(RUNS[MISTAKES[mistake].kind])})
    notebook = (BROKEN / f"{mistake}.ipynb").read_bytes()
    data = run_autograder(lay_out(autograder_zip, tmp_path / "autograder", {"submitted.ipynb": notebook}, rubric))
    failed = sorted(t["number"] for t in data["tests"] if t["status"] == "failed")
    expected = sorted(set(MISTAKES[mistake].breaks) & set(rubric.graded))
    assert failed == expected, f"{mistake}: failed {failed}, not {expected}"
    assert data["score"] == rubric.total - len(failed), f"score {data['score']} of {rubric.total}"


@pytest.mark.grading
@pytest.mark.timeout(900)
def test_setup_sh_installs_what_run_autograder_needs(autograder_zip: Path, tmp_path: Path) -> None:
    """Gradescope's way, in full: setup.sh makes its own environment (torch and the pinned tools from the
    package registry, mnist_lab from the wheel in the zip), then run_autograder grades with it alone."""
    rubric = Rubric.from_dict({"graded": ["Q21", "Q26"]})
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extractall(root / "source")
    (root / "source" / "rubric.toml").write_text(rubric.to_toml())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source", env=env,
                           capture_output=True, text=True, timeout=800, check=False)  # fmt: skip
    assert setup.returncode == 0, f"setup.sh exited {setup.returncode}: {setup.stderr.strip()[-1500:]}"
    assert "setup.sh: torch" in setup.stdout, setup.stdout[-500:]
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    (root / "run_autograder").chmod(0o755)  # zipfile does not restore modes; Gradescope's unzip does
    (root / "submission").mkdir()
    shutil.copy(BROKEN / "wrong_layer_size.ipynb", root / "submission" / "hw2.ipynb")
    data = run_autograder(root)
    assert [(t["number"], t["status"]) for t in data["tests"]] == [("Q21", "passed"), ("Q26", "failed")], data


@pytest.mark.grading
@pytest.mark.training
def test_the_printed_solution_gets_full_marks(autograder_zip: Path, tmp_path: Path, gradescope_memory) -> None:
    """Within the memory of the Gradescope setting that docs/gradescope.md names as the least that will do,
    where a memory cgroup can bound it (a warning says where it cannot)."""
    root = lay_out(autograder_zip, tmp_path / "autograder", {"hw2.ipynb": SOLUTION.read_bytes()})
    if gradescope_memory is None:
        warnings.warn("no memory cgroup can be made here: the printed solution was graded without a memory bound",
                      stacklevel=1)  # fmt: skip
    data = run_autograder(root, gradescope_memory)
    lost = [(t["number"], t["output"]) for t in data["tests"] if t["status"] != "passed"]
    bound = f" within {GRADESCOPE_MEMORY >> 20} MiB" if gradescope_memory else ""
    assert not lost, f"the printed solution lost points{bound}: {lost}"
    assert data["score"] == len(GRADED), f"score {data['score']}, not {len(GRADED)}"
