"""The rubric: which questions grading grades, their points and who sees them (TOML); the batch's CSV and Gradescope's
results.json both count points by it.

    graded = ["Q21", "Q25", "Q26"]    # optional: these questions only (default: every graded question)

    [default]
    points = 1                        # each question's points where [questions] does not say
    visibility = "visible"            # hidden, after_due_date, after_published or visible

    [questions]
    Q31 = { points = 3, visibility = "after_published" }
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli backport (the test extra and the zip's requirements.txt)
    import tomli as tomllib

from spec.harness.contract import QUESTIONS

VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")  # Gradescope's, most hidden first
GRADED = tuple(name for name, question in QUESTIONS.items() if question.graded)


class RubricError(Exception):
    """A rubric that cannot be used: the message is one line that names the problem."""


@dataclass(frozen=True)
class Rubric:
    graded: tuple[str, ...] = GRADED
    points: dict[str, float] = field(default_factory=dict)
    visibility: dict[str, str] = field(default_factory=dict)
    default_points: float = 1.0
    default_visibility: str = "visible"

    def points_of(self, question: str) -> float:
        return self.points.get(question, self.default_points)

    def visibility_of(self, question: str) -> str:
        return self.visibility.get(question, self.default_visibility)

    @property
    def total(self) -> float:
        return sum(self.points_of(q) for q in self.graded)

    @classmethod
    def load(cls, path: Path) -> Rubric:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise RubricError(f"{path}: {err}") from None
        try:
            return cls.from_dict(data)
        except RubricError as err:
            raise RubricError(f"{path}: {err}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rubric:
        unknown = set(data) - {"graded", "default", "questions"}
        if unknown:
            raise RubricError(f"unknown key {sorted(unknown)[0]!r} (graded, default and questions are known)")
        graded = tuple(_question(q, "graded") for q in _list(data.get("graded", list(GRADED)), "graded"))
        default = _table(data.get("default", {}), "[default]")
        points, visibility = {}, {}
        for name, entry in _table(data.get("questions", {}), "[questions]").items():
            _question(name, "[questions]")
            entry = _table(entry, f"[questions] {name}")
            if "points" in entry:
                points[name] = _points(entry["points"], f"{name}.points")
            if "visibility" in entry:
                visibility[name] = _visibility(entry["visibility"], f"{name}.visibility")
        return cls(
            graded=graded,
            points=points,
            visibility=visibility,
            default_points=_points(default.get("points", 1.0), "default.points"),
            default_visibility=_visibility(default.get("visibility", "visible"), "default.visibility"),
        )

    def to_toml(self) -> str:
        """The rubric as a file a course edits: every graded question listed with its points."""
        lines = [
            "# Points and visibility of each graded question on Gradescope (docs/gradescope.md).",
            f"graded = [{', '.join(repr(q).replace(chr(39), chr(34)) for q in self.graded)}]",
            "",
            "[default]",
            f"points = {self.default_points:g}",
            f'visibility = "{self.default_visibility}"  # {", ".join(VISIBILITY)}',
            "",
            "[questions]",
        ]
        for q in self.graded:
            lines.append(f'{q} = {{ points = {self.points_of(q):g}, visibility = "{self.visibility_of(q)}" }}')
        return "\n".join(lines) + "\n"


def _question(name: Any, where: str) -> str:
    if name not in GRADED:
        raise RubricError(f"{where}: {name!r} is not a graded question (they are {', '.join(GRADED)})")
    return name


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise RubricError(f"{where} must be a list of questions, not {value!r}")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RubricError(f"{where} must be a table, not {value!r}")
    return value


def _points(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise RubricError(f"{where} must be a number of points, 0 or more, not {value!r}")
    return float(value)


def _visibility(value: Any, where: str) -> str:
    if value not in VISIBILITY:
        raise RubricError(f"{where} must be one of {', '.join(VISIBILITY)}, not {value!r}")
    return value
