"""The contract is written in one place (spec/harness/contract.py), and everything else agrees with it: each
question module declares one question of it and asks for no other name, docs/spec.md shows the contract as
it is, docs/grading.md the grade report's schema, and the broken notebooks are the ones
spec/meta_tests/broken/mistakes.py writes (that the package provides every name is a package test,
spec/package_tests/test_exports.py). And every test starts from generators seeded by its
own id (spec/harness/fixtures.py), which makes every verdict the same run after run."""

from __future__ import annotations

import importlib
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from spec.harness import contract, notebook
from spec.harness.fixtures import seed_of
from spec.meta_tests.broken import mistakes
from spec.reports import verdicts

ROOT = Path(__file__).resolve().parents[2]


def shown_in(doc: str, section: str) -> str:
    """What docs/`doc` shows between `<!-- section: ... -->` and `<!-- /section -->`."""
    text = (ROOT / "docs" / doc).read_text()
    shown = re.search(rf"<!-- {section}: .*? -->\n(.*?)\n<!-- /{section} -->", text, re.DOTALL)
    assert shown, f"docs/{doc} has no <!-- {section}: ... --> section"
    return shown[1]


def declared_question(path: Path) -> list[str]:
    """The questions a module's `pytestmark` declares."""
    module = importlib.import_module(f"spec.questions.{path.stem}")
    marks = module.__dict__.get("pytestmark", [])
    return [mark.args[0] for mark in (marks if isinstance(marks, list) else [marks]) if mark.name == "question"]


DECLARED = {path: declared_question(path) for path in sorted((ROOT / "spec" / "questions").glob("test_*.py"))}
QUESTION_MODULES = {questions[0]: path for path, questions in DECLARED.items() if len(questions) == 1}


def test_every_question_module_declares_one_question_and_every_question_has_a_module() -> None:
    odd = {path.name: questions for path, questions in DECLARED.items() if len(questions) != 1}
    assert not odd, f"each module in spec/questions declares one question (pytest.mark.question): {odd}"
    assert list(QUESTION_MODULES) == list(contract.QUESTIONS), (
        f"modules {list(QUESTION_MODULES)} against entries {list(contract.QUESTIONS)}"
    )


@pytest.mark.parametrize("question", list(contract.QUESTIONS))
def test_a_question_module_asks_for_the_names_its_entry_lists(question: str) -> None:
    asked = set(re.findall(r"\bimpl\.(\w+)", QUESTION_MODULES[question].read_text()))
    unlisted = asked - set(contract.QUESTIONS[question].uses)
    assert not unlisted, f"{question} asks for {sorted(unlisted)}, which spec/harness/contract.py does not list for it"
    assert set(contract.QUESTIONS[question].uses) <= set(contract.CONTRACT), f"{question} uses a name not in CONTRACT"


def test_the_grading_doc_shows_the_schema_of_the_grade_report() -> None:
    assert shown_in("grading.md", "schema") == verdicts.schema_markdown(), (
        "docs/grading.md's schema differs from spec/reports/verdicts.py's SCHEMA"
    )


def test_the_grade_report_writes_only_documented_keys() -> None:
    verdict = verdicts.QuestionVerdict("Q21", "t", True, "failed", "m", {"passed": 0, "failed": 1, "skipped": 0})
    graded = verdicts.NotebookResult(
        implementation="nb.ipynb", train_seed=0, torch="2.13", sandbox="here", questions=[verdict],
        skipped_cells=[{"cell": 1}], notebook="nb.ipynb", seconds=1.0,
    ).to_json()  # fmt: skip
    missing = verdicts.NotebookResult(notebook="nb.ipynb", error="not graded").to_json()
    keys = {*graded, *missing} | {f"questions[].{key}" for key in graded["questions"][0]}
    assert keys - {"skipped_cells[]"} <= set(verdicts.SCHEMA), f"undocumented: {keys - set(verdicts.SCHEMA)}"
    assert verdicts.NotebookResult.from_json(graded).to_json() == graded, "a result does not survive its JSON"


def test_the_spec_doc_shows_the_contract() -> None:
    assert shown_in("spec.md", "contract") == contract.markdown(), (
        "docs/spec.md's contract differs from spec/harness/contract.py's markdown()"
    )


def test_the_broken_notebooks_are_the_ones_the_table_writes() -> None:
    nbformat = pytest.importorskip("nbformat")  # in the test extra; grading needs it
    on_disk = sorted(p.stem for p in mistakes.FOLDER.glob("*.ipynb"))
    assert on_disk == sorted(mistakes.MISTAKES), (
        f"spec/meta_tests/broken holds {on_disk}; the table lists {sorted(mistakes.MISTAKES)}"
    )
    for name in mistakes.MISTAKES:
        written = [cell.source for cell in mistakes.notebook(name).cells]
        committed = [cell.source for cell in nbformat.read(mistakes.path(name), as_version=4).cells]
        assert committed == written, (
            f"spec/meta_tests/broken/{name}.ipynb is stale: run python -m spec.meta_tests.broken.mistakes"
        )


def test_the_printed_solution_defines_what_a_student_writes() -> None:
    pytest.importorskip("nbformat")
    built = notebook.build(notebook.plan(mistakes.SOLUTION))
    try:
        for name in contract.STUDENT_NAMES:
            assert name in built.names, built.missing(name)
    finally:
        built.worker.close()


@pytest.mark.parametrize("twin", ["a", "b"])
def test_a_test_draws_from_generators_seeded_by_its_id(request: pytest.FixtureRequest, twin: str) -> None:
    seed = seed_of(request.node.nodeid)
    assert seed == seed_of(request.node.nodeid.replace("spec/meta_tests/", "elsewhere/")), "a move changes the seed"
    assert torch.initial_seed() == seed, f"torch's seed {torch.initial_seed()}, not the test id's {seed}"
    assert random.getstate() == random.Random(seed).getstate(), "Python's generator is not seeded by the test id"
    want = np.random.RandomState(seed).get_state()
    got = np.random.get_state()
    assert got[0] == want[0], "NumPy's generator is not seeded by the test id"
    np.testing.assert_array_equal(got[1], want[1], err_msg="NumPy's generator is not seeded by the test id")


def test_a_list_of_questions_is_read_alike_by_pytest_the_batch_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    from spec import check
    from spec.grade import __main__ as grade_cli

    said = "no such question: Q99 (the questions are Q1, Q2,"
    with pytest.raises(ValueError, match=re.escape(f"check: {said}")):
        check.parse("Q21, Q99")
    with pytest.raises(SystemExit):
        grade_cli.main([str(ROOT), "--questions", "Q21,Q99"])
    assert said in capsys.readouterr().err, "python -m spec.grade words an unknown question otherwise"
    proc = subprocess.run([sys.executable, "-m", "pytest", "spec/questions", "--questions", "Q21,Q99", "--co", "-q",
                           "-p", "no:xdist", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert f"--questions Q21,Q99: {said}" in proc.stderr, f"pytest words an unknown question otherwise: {proc.stderr}"
    read = contract.parse_questions("q30, 21")
    assert read == ["Q21", "Q29-Q30"], f"'q30, 21' read as {read}: Q30 is graded with Q29, in the assignment's order"
