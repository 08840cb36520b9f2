"""Gradescope's autograder (spec/gradescope): the rubric, results.json against Gradescope's specification
(results.schema.json), and the built zip's run_autograder on a folder laid out as /autograder."""

from __future__ import annotations

import glob
import importlib.metadata
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
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from spec.grade.rubric import GRADED, Rubric, RubricError
from spec.gradescope import results as gradescope_results
from spec.gradescope.build import BACKPORTS, PINNED, SUPPORTED, build, requirements, torch_version
from spec.meta_tests.broken.mistakes import FOLDER as BROKEN
from spec.meta_tests.broken.mistakes import MISTAKES, RUNS, SOLUTION
from spec.reports.verdicts import NotebookResult, QuestionVerdict
from spec.sandbox import bounds

GRADESCOPE_MEMORY = 1536 << 20  # bytes: Gradescope's "1.0 CPU, 1.5 GB" setting, the least that grades the solution
# Opt-in: the full setup.sh and run_autograder with these Pythons as the image's python3 ("3.10 3.12"), each a
# torch install from the package registry (minutes, and gigabytes where no CPU wheel lies on disk).
IMAGE_PYTHONS = os.environ.get("MNIST_LAB_IMAGE_PYTHONS", "").split()
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


def applying(text: str, python: str) -> dict[str, list[Requirement]]:
    """requirements.txt's lines that pip applies on this Python (its environment markers), by package."""
    env = {"python_version": python, "python_full_version": f"{python}.0"}
    found: dict[str, list[Requirement]] = {}
    for line in text.splitlines():
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            found.setdefault(requirement.name, []).append(requirement)
    return found


def test_the_pins_resolve_on_every_supported_python() -> None:
    """A pinned release goes only to the Pythons its Requires-Python admits (numpy 2.4 needs 3.11): the others
    get a range that pip resolves for them, and 3.10 gets the TOML backport."""
    text = requirements()
    for python in SUPPORTED:
        found = applying(text, python)
        for name in PINNED:
            lines = found.get(name, [])
            assert len(lines) == 1, f"Python {python}: {lines} for {name}, not one line:\n{text}"
            (requirement,) = found[name]
            pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            supports = SpecifierSet(importlib.metadata.metadata(name)["Requires-Python"] or "")
            assert not pins or supports.contains(f"{python}.0"), (
                f"Python {python} gets {requirement}, whose Requires-Python is {supports}:\n{text}"
            )
        for name, since in BACKPORTS.items():
            needed = tuple(map(int, python.split("."))) < tuple(map(int, since.split(".")))
            assert (name in found) == needed, f"Python {python}: {name} {'missing' if needed else 'installed'}:\n{text}"


def test_a_release_that_drops_a_python_pins_the_others_and_gives_it_the_declared_range() -> None:
    class Dropped:  # numpy 9.9.0, for Python 3.12 and newer only; every other package as installed
        version, metadata = "9.9.0", {"Requires-Python": ">=3.12"}

    def distribution(name: str) -> object:
        return Dropped() if name == "numpy" else importlib.metadata.distribution(name)

    lines = [line for line in requirements(distribution).splitlines() if line.startswith("numpy")]
    assert lines == ['numpy==9.9.0; python_version >= "3.12"', 'numpy>=1.24,<=9.9.0; python_version < "3.12"'], lines


def test_torch_and_the_project_support_every_supported_python() -> None:
    """setup.sh pins torch without a marker; pyproject.toml's requires-python starts at the oldest."""
    torch = SpecifierSet(importlib.metadata.metadata("torch")["Requires-Python"] or "")
    assert all(torch.contains(f"{p}.0") for p in SUPPORTED), f"torch {torch_version()} needs Python {torch}"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    oldest = f'requires-python = ">={SUPPORTED[0]}"'
    assert oldest in pyproject, f"pyproject.toml does not say {oldest}"


# --- setup.sh's Python, on each image ------------------------------------------------------------------------

BASH = shutil.which("bash") or "/bin/bash"
SETUP_TOOLS = ("dirname", "mktemp", "rm")  # what setup.sh runs, besides Python, apt-get and uv, to choose one


def interpreter(minor: str) -> Path:
    """A real Python of this version (pyenv's, or the system's); the test skips where there is none."""
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [*sorted(glob.glob(f"{pyenv}/versions/{minor}.*/bin/python{minor}")), f"/usr/bin/python{minor}",
                  f"/usr/local/bin/python{minor}"]  # fmt: skip
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    pytest.skip(f"no Python {minor} here (pyenv's versions/{minor}.*, /usr/bin/python{minor})")


def full_version(python: Path) -> str:
    code = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def image(folder: Path, python3: Path | None, **programs: Path | str) -> Path:
    """A folder that stands for an image's PATH: `python3` and `programs` (a file, or a shell script's text)
    and the few tools setup.sh needs; no apt-get, no uv, no other Python unless given."""
    folder.mkdir(parents=True)
    tools = {tool: Path(shutil.which(tool) or f"/usr/bin/{tool}") for tool in SETUP_TOOLS}
    for name, program in {**tools, **({"python3": python3} if python3 else {}), **programs}.items():
        if isinstance(program, Path):
            (folder / name).symlink_to(program)
        else:
            (folder / name).write_text(program)
            (folder / name).chmod(0o755)
    return folder


def choose_python(autograder_zip: Path, root: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """setup.sh --python-only, from the zip laid out in ROOT/source, with `path` the whole of PATH."""
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extract("setup.sh", root / "source")
    # No package index: an image's pip cannot fetch uv here, as it could on Gradescope.
    env = {"PATH": str(path), "HOME": str(root), "LANG": "C.UTF-8", "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run([BASH, str(root / "source" / "setup.sh"), "--python-only"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def chosen(proc: subprocess.CompletedProcess[str]) -> str:
    """setup.sh's one line, after checking that it said one and succeeded."""
    assert proc.returncode == 0, f"setup.sh --python-only exited {proc.returncode}: {proc.stderr.strip()}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"setup.sh said {len(lines)} lines about its Python, not one: {proc.stdout!r}"
    return lines[0]


@pytest.mark.grading
@pytest.mark.parametrize("minor", ["3.10", "3.12"])
def test_setup_sh_uses_the_image_python3_where_it_is_supported(
    autograder_zip: Path, tmp_path: Path, minor: str
) -> None:
    """Ubuntu 22.04's python3 (3.10) and 24.04's (3.12), with no apt-get: the image's own."""
    python = interpreter(minor)
    path = image(tmp_path / "bin", python)
    line = chosen(choose_python(autograder_zip, tmp_path / "autograder", path))
    expected = f"setup.sh: Python {full_version(python)} ({path / 'python3'}); the image's python3, in the supported "
    assert line == expected + f"range {SUPPORTED[0]}-{SUPPORTED[-1]}", f"{line!r}, not {expected!r}..."


@pytest.mark.grading
def test_setup_sh_takes_a_newer_python_on_path_over_an_old_python3(autograder_zip: Path, tmp_path: Path) -> None:
    """Ubuntu 20.04's python3 (3.8) beside a python3.12, with no apt-get."""
    old, new = interpreter("3.8"), interpreter("3.12")
    path = image(tmp_path / "bin", old, **{"python3.12": new})
    line = chosen(choose_python(autograder_zip, tmp_path / "autograder", path))
    expected = f"setup.sh: Python {full_version(new)} ({path}/python3.12); the image's python3 is {full_version(old)}"
    assert line == expected, f"{line!r}, not {expected!r}"


@pytest.mark.grading
def test_setup_sh_installs_a_python_with_apt_where_the_image_has_none(autograder_zip: Path, tmp_path: Path) -> None:
    """A 3.8 image whose apt has python3.12 (a stand-in apt-get that links it), newest tried first."""
    old, new = interpreter("3.8"), interpreter("3.12")
    log, path = tmp_path / "apt.log", tmp_path / "bin"
    apt = f"""#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
    "update -qq") exit 0 ;;
    "install -y -qq python3.12 python3.12-venv") {shutil.which("ln") or "/bin/ln"} -s "{new}" "{path}/python3.12" ;;
    *) echo "E: Unable to locate package" >&2; exit 100 ;;
esac
"""
    image(path, old, **{"apt-get": apt})
    line = chosen(choose_python(autograder_zip, tmp_path / "autograder", path))
    expected = (f"setup.sh: Python {full_version(new)} ({path / 'python3.12'}); the image's python3 is "
                f"{full_version(old)}, no python3.13..python3.10 is on PATH: apt-get installed python3.12")  # fmt: skip
    assert line == expected, f"{line!r}, not {expected!r}"
    calls = log.read_text().splitlines()
    assert calls[:3] == ["update -qq", "install -y -qq python3.13 python3.13-venv",
                         "install -y -qq python3.12 python3.12-venv"], f"apt-get was called: {calls}"  # fmt: skip


@pytest.mark.grading
def test_setup_sh_falls_back_to_uv_without_apt(autograder_zip: Path, tmp_path: Path) -> None:
    """A 3.8 image with no apt-get and a uv (a stand-in: uv would download its Python, which cannot be done
    here), which installs Python 3.12 into the source folder, where the sandboxed worker can read it."""
    old, new = interpreter("3.8"), interpreter("3.12")
    log, root = tmp_path / "uv.log", tmp_path / "autograder"
    uv = f"""#!/bin/sh
echo "$* $UV_PYTHON_INSTALL_DIR $UV_PYTHON_PREFERENCE" >> "{log}"
case "$1 $2" in
    "python install") exit 0 ;;
    "python find") echo "{new}" ;;
    *) exit 2 ;;
esac
"""
    path = image(tmp_path / "bin", old, uv=uv)
    line = chosen(choose_python(autograder_zip, root, path))
    expected = (f"setup.sh: Python {full_version(new)} ({new}); the image's python3 is {full_version(old)}, no "
                f"python3.13..python3.10 is on PATH, there is no apt-get: uv ({path / 'uv'}) installed Python 3.12")
    assert line == expected, f"{line!r}, not {expected!r}"
    where = f"{root / 'source' / '.python'} only-managed"
    calls = log.read_text().splitlines()
    assert calls == [f"python install 3.12 {where}", f"python find 3.12 {where}"], f"uv was called: {calls}"


@pytest.mark.grading
def test_setup_sh_without_any_python_to_use_fails_in_one_line(autograder_zip: Path, tmp_path: Path) -> None:
    """A 3.8 image with no apt-get and no uv, whose pip cannot fetch uv: one line, and exit 1."""
    old = interpreter("3.8")
    proc = choose_python(autograder_zip, tmp_path / "autograder", image(tmp_path / "bin", old))
    assert proc.returncode == 1, f"setup.sh exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    expected = (f"setup.sh: error: no Python 3.10-3.13 to grade with: the image's python3 is {full_version(old)}, "
                "no python3.13..python3.10 is on PATH, there is no apt-get, and there is no uv (the image's python3 "
                "could not pip-install it)\n")  # fmt: skip
    assert (proc.stdout, proc.stderr) == ("", expected), f"stdout {proc.stdout!r}, stderr {proc.stderr!r}"


# --- run_autograder, where the grader leaves no results.json ----------------------------------------------------

SHELL_TOOLS = ("mkdir", "rm", "mktemp", "cat", "tr", "sed", "iconv", "awk", "tail", "mv")  # no Python among them
BROKEN_PYTHONS = {
    "cannot import": (
        "#!/bin/sh\n"
        "printf 'Traceback (most recent call last):\\n  File \"C:\\\\a\\tb\" \\001\\377caf\\303\\251\\n' >&2\n"
        "echo \"ModuleNotFoundError: No module named 'tqdm'\" >&2\n"
        "exit 1\n",
        1,
        "the grader stopped (exit status 1) before it wrote results.json",
        'Traceback (most recent call last):\n  File "C:\\a\tb" café\nModuleNotFoundError: No module named \'tqdm\'',
    ),
    "exits 0 without results": ("#!/bin/sh\necho 'nothing written'\n", 1,
                                "the grader exited (status 0) without writing results.json", "nothing written"),
    "killed": ("#!/bin/sh\necho 'out of memory' >&2\nkill -9 $$\n", 137,
               "the grader was killed (signal 9) before it wrote results.json", "out of memory"),
}  # fmt: skip


def shell_only_autograder(autograder_zip: Path, root: Path, python: str | None, rubric: str | None = None):
    """run_autograder from the zip, with ROOT/source/.venv/bin/python this script (None: no .venv at all),
    and nothing but shell tools on PATH: the results.json it writes itself, and the process."""
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extract("run_autograder", root / "source")
        archive.extract("rubric.toml", root / "source")
    if rubric is not None:
        (root / "source" / "rubric.toml").write_text(rubric)
    if python is not None:
        (root / "source" / ".venv" / "bin").mkdir(parents=True)
        (root / "source" / ".venv" / "bin" / "python").write_text(python)
        (root / "source" / ".venv" / "bin" / "python").chmod(0o755)
    shell = {tool: Path(shutil.which(tool) or f"/usr/bin/{tool}") for tool in SHELL_TOOLS}
    tools = image(root / "tools", None, **shell)
    env = {"PATH": str(tools), "AUTOGRADER_ROOT": str(root), "LANG": "C.UTF-8"}
    proc = subprocess.run([BASH, str(root / "source" / "run_autograder")], env=env, capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    path = root / "results" / "results.json"
    assert path.is_file(), f"run_autograder left no results.json (exit {proc.returncode}): {proc.stderr[-800:]!r}"
    return valid(json.loads(path.read_bytes())), proc


def test_run_autograder_without_its_python_writes_not_gradable(autograder_zip: Path, tmp_path: Path) -> None:
    data, proc = shell_only_autograder(autograder_zip, tmp_path / "autograder", None)
    assert proc.returncode == 127, f"run_autograder exited {proc.returncode}, not 127 (no Python to run)"
    shape = gradescope_results.not_gradable("why", Rubric(), 1.0)
    assert sorted(data) == sorted(shape), f"results.json's keys {sorted(data)}, not not_gradable's {sorted(shape)}"
    assert [sorted(t) for t in data["tests"]] == [sorted(t) for t in shape["tests"]], data["tests"]
    (test,) = data["tests"]
    assert (test["name"], test["visibility"], test["status"], test["score"], data["score"]) == (
        "Not gradable", "visible", "failed", 0, 0), test  # fmt: skip
    assert test["max_score"] == Rubric().total, f"max_score {test['max_score']}, not the rubric's {Rubric().total}"
    assert "the autograder's Python could not start" in test["output"], test["output"]
    assert ".venv/bin/python is missing: setup.sh did not make" in test["output"], test["output"]


@pytest.mark.parametrize("case", list(BROKEN_PYTHONS))
def test_run_autograder_writes_not_gradable_with_the_error_where_the_grader_left_none(
    autograder_zip: Path, tmp_path: Path, case: str
) -> None:
    script, status, why, last_lines = BROKEN_PYTHONS[case]
    rubric = 'graded = ["Q21", "Q29-Q30",\n  "Q31"]  # 2+2+5\n[default]\npoints = 2\n[questions]\n'
    rubric += 'Q31 = { points = 5 }\n"Q32" = { points = 7 }\n'
    data, proc = shell_only_autograder(autograder_zip, tmp_path / "autograder", script, rubric)
    assert proc.returncode == status, f"{case}: run_autograder exited {proc.returncode}, not {status}"
    (test,) = data["tests"]
    assert (test["name"], test["score"], test["max_score"]) == ("Not gradable", 0, 9), f"{case}: {test}"
    assert why in test["output"], f"{case}: {test['output']!r} does not say {why!r}"
    assert data["output"].endswith(why), f"{case}: {data['output']!r}"
    said = test["output"]
    assert said.endswith(f"Its last lines:\n{last_lines}"), f"{case}: not the error's last lines: {said!r}"


def test_run_autograder_keeps_the_results_its_grader_wrote(autograder_zip: Path, tmp_path: Path) -> None:
    written = gradescope_results.not_gradable("a reason of the grader's own", Rubric(), 2.0)
    results = '"$AUTOGRADER_ROOT/results/results.json"'
    script = f"#!/bin/sh\nmkdir -p \"$AUTOGRADER_ROOT/results\"\ncat > {results} <<'EOF'\n{json.dumps(written)}\nEOF\n"
    script += "exit 3\n"
    data, proc = shell_only_autograder(autograder_zip, tmp_path / "autograder", script)
    assert proc.returncode == 3, f"run_autograder exited {proc.returncode}, not its grader's 3"
    assert data == written, f"run_autograder replaced its grader's results.json: {data}"


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
    usable = "memory" in bounds.cgroup_controllers()
    cgroup = bounds.bounded_cgroup("memory", "gradescope", GRADESCOPE_MEMORY) if usable else None
    try:
        yield cgroup
    finally:
        if cgroup is not None:
            bounds.remove_cgroup(cgroup)


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
@pytest.mark.parametrize("minor", [None, *IMAGE_PYTHONS], ids=lambda minor: f"python{minor}" if minor else "python3")
def test_setup_sh_installs_what_run_autograder_needs(autograder_zip: Path, tmp_path: Path, minor: str | None) -> None:
    """Gradescope's way, in full: setup.sh makes its own environment (torch and the pinned tools from the
    package registry, mnist_lab from the wheel in the zip), then run_autograder grades with it alone. With the
    Pythons of MNIST_LAB_IMAGE_PYTHONS first on PATH as the image's python3 too, grading the printed solution
    as well."""
    rubric = Rubric.from_dict({"graded": ["Q21", "Q26"]})
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder_zip) as archive:
        archive.extractall(root / "source")
    (root / "source" / "rubric.toml").write_text(rubric.to_toml())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    if minor is not None:
        env["PATH"] = f"{image(tmp_path / 'image', interpreter(minor))}:{env['PATH']}"
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source", env=env,
                           capture_output=True, text=True, timeout=800, check=False)  # fmt: skip
    assert setup.returncode == 0, f"setup.sh exited {setup.returncode}: {setup.stderr.strip()[-1500:]}"
    assert "setup.sh: torch" in setup.stdout, setup.stdout[-500:]
    if minor is not None:
        said = setup.stdout.splitlines()[0]
        assert said.startswith(f"setup.sh: Python {minor}."), f"setup.sh did not take the image's {minor}: {said}"
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    (root / "run_autograder").chmod(0o755)  # zipfile does not restore modes; Gradescope's unzip does
    (root / "submission").mkdir()
    shutil.copy(BROKEN / "wrong_layer_size.ipynb", root / "submission" / "hw2.ipynb")
    data = run_autograder(root)
    assert [(t["number"], t["status"]) for t in data["tests"]] == [("Q21", "passed"), ("Q26", "failed")], data
    if minor is not None:
        shutil.copy(SOLUTION, root / "submission" / "hw2.ipynb")
        data = run_autograder(root)
        lost = [(t["number"], t["output"]) for t in data["tests"] if t["status"] != "passed"]
        assert not lost, f"the printed solution lost points with Python {minor}: {lost}"
        assert f"torch {torch_version()}" in data["output"], data["output"]


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
