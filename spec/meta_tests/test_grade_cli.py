"""`python -m spec.grade`'s arguments: each bad one is one line on stderr and exit 2, before any grading.
test_grading.py grades real folders with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spec.grade import __main__ as grade_cli
from spec.grade import batch

BAD_OPTIONS = {
    "grade nothing": ([], "SUBMISSION"),
    "grade a missing file": (["{tmp}/missing.ipynb"], "missing.ipynb"),
    "grade an empty folder": (["{tmp}"], "no notebook"),
    "grade an unknown question": (["{tmp}", "--questions", "Q21,Q99"], "Q99"),
    "grade with no question": (["{tmp}", "--questions", ","], "--questions"),
    "grade 0 jobs at once": (["{tmp}", "--jobs", "0"], "--jobs"),
    "grade with a zero time limit": (["{tmp}", "--timeout", "0"], "--timeout"),
    "grade --out into a missing folder": (["{tmp}", "--out", "{tmp}/missing/grades.csv"], "--out"),
    "grade --out names the JSON": (["{tmp}", "--out", "{tmp}/grades.json"], "--out"),
    "grade unsplittable --pytest-args": (["{tmp}", "--pytest-args", "-k 'q21"], "--pytest-args"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_options_exit_2_with_one_line_before_any_grading(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("grading started before the options were checked")

    monkeypatch.setattr(batch, "grade_one", forbidden)
    argv, option = BAD_OPTIONS[case]
    try:
        code: int | str | None = grade_cli.main([arg.format(tmp=tmp_path) for arg in argv])
    except SystemExit as exit_:
        code = exit_.code
    lines = capsys.readouterr().err.splitlines()
    assert code == 2, f"{case}: exit status {code}, expected 2; stderr {lines}"
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {lines}"
    assert option in lines[0], f"{case}: the error does not name {option}: {lines[0]}"
    assert list(tmp_path.iterdir()) == [], f"{case}: files were written: {list(tmp_path.iterdir())}"
