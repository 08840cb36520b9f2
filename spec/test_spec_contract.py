"""The contract is written in one place (spec/contract.py), and everything else agrees with it: the question
modules ask for no other name, the package provides every name, the README shows the contract as it is,
and the broken notebooks are the ones spec/broken/mistakes.py writes. And every test starts from
generators seeded by its own id (conftest.py), which makes every verdict the same run after run."""

from __future__ import annotations

import random
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import mnist_lab
from spec import contract, notebook
from spec.broken import mistakes

ROOT = Path(__file__).resolve().parent.parent
QUESTION_MODULES = {contract.question_of(p.name): p for p in sorted((ROOT / "spec").glob("test_q*.py"))}


def test_every_question_module_has_an_entry_and_every_entry_a_module() -> None:
    assert list(QUESTION_MODULES) == list(contract.QUESTIONS), (
        f"modules {list(QUESTION_MODULES)} against entries {list(contract.QUESTIONS)}"
    )


@pytest.mark.parametrize("question", list(contract.QUESTIONS))
def test_a_question_module_asks_for_the_names_its_entry_lists(question: str) -> None:
    asked = set(re.findall(r"\bimpl\.(\w+)", QUESTION_MODULES[question].read_text()))
    unlisted = asked - set(contract.QUESTIONS[question].uses)
    assert not unlisted, f"{question} asks for {sorted(unlisted)}, which spec/contract.py does not list for it"
    assert set(contract.QUESTIONS[question].uses) <= set(contract.CONTRACT), f"{question} uses a name not in CONTRACT"


def test_the_package_provides_the_contract() -> None:
    missing = [name for name in contract.CONTRACT if name not in mnist_lab.__all__ or not hasattr(mnist_lab, name)]
    assert not missing, f"mnist_lab lacks {missing} of the contract"


def test_the_readme_shows_the_contract() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"<!-- contract: .*? -->\n(.*?)\n<!-- /contract -->", readme, re.DOTALL)
    assert shown, "README.md has no <!-- contract: ... --> section"
    assert shown[1] == contract.markdown(), "README's contract differs from spec/contract.py's markdown()"


def test_the_broken_notebooks_are_the_ones_the_table_writes() -> None:
    nbformat = pytest.importorskip("nbformat")  # in the test extra; grading needs it
    on_disk = sorted(p.stem for p in (ROOT / "spec" / "broken").glob("*.ipynb"))
    assert on_disk == sorted(mistakes.MISTAKES), (
        f"spec/broken holds {on_disk}; the table lists {sorted(mistakes.MISTAKES)}"
    )
    for name in mistakes.MISTAKES:
        written = [cell.source for cell in mistakes.notebook(name).cells]
        committed = [cell.source for cell in nbformat.read(mistakes.path(name), as_version=4).cells]
        assert committed == written, f"spec/broken/{name}.ipynb is stale: run python -m spec.broken.mistakes"


def test_the_printed_solution_defines_what_a_student_writes() -> None:
    pytest.importorskip("nbformat")
    built = notebook.build(notebook.plan(mistakes.SOLUTION), name="printed_solution_under_test")
    for name in contract.STUDENT_NAMES:
        assert hasattr(built.module, name), built.missing(name)


@pytest.mark.parametrize("twin", ["a", "b"])
def test_a_test_draws_from_generators_seeded_by_its_id(request: pytest.FixtureRequest, twin: str) -> None:
    seed = zlib.crc32(request.node.nodeid.encode())
    assert torch.initial_seed() == seed, f"torch's seed {torch.initial_seed()}, not crc32 of the test id {seed}"
    assert random.getstate() == random.Random(seed).getstate(), "Python's generator is not seeded by the test id"
    want = np.random.RandomState(seed).get_state()
    got = np.random.get_state()
    assert got[0] == want[0], "NumPy's generator is not seeded by the test id"
    np.testing.assert_array_equal(got[1], want[1], err_msg="NumPy's generator is not seeded by the test id")
