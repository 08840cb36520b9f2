"""A student's notebook (or script), read and planned here, its definitions built in a sandboxed worker.

The notebook is read with nbformat, never run in a kernel. Of its top-level statements, grading runs
the imports, the function and class definitions, and the assignments those definitions need
(`device = 'cuda' if torch.cuda.is_available() else 'cpu'`), in notebook order; everything else
(loading data, training, printing, plotting) is skipped and listed by cell. IPython magics and shell
lines are skipped too. `plan` decides this by reading the code, and runs none of it; `build` has the
worker (spec/sandbox) run the planned statements. Code that does not parse, or raises while it is
built, is skipped with its reason; a name that only skipped code binds is reported as such when a test
asks for it.

The course's MNISTtools (`course_tools`) is served by mnist_lab, in the grader: `load` reads the
embedded MNIST (whatever `path` the notebook gives) and `show` draws without a screen.
"""

from __future__ import annotations

import ast
import builtins
import enum
import re
import symtable
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spec.harness.text import one_line

if TYPE_CHECKING:  # the client imports torch; reading a notebook needs none of it (spec/gradescope/run.py)
    from spec.sandbox.client import Worker

COURSE_MODULE = "MNISTtools"
# A top-level assignment that calls one of these loads data or trains: never run, even where needed.
HEAVY_CALLS = frozenset({"load", "backprop_deep", "train"})
# `%time f()`, `!pip ...`, `files = !ls`, `LeNet?`
_MAGIC = re.compile(r"^(\s*)(?:(?:[\w.,\s\[\]]+=\s*)?[%!]|[\w.]+\?\??\s*$)")
_DEFINES = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=[^=]", re.MULTILINE)


class NotebookError(Exception):
    """The file cannot be read as a notebook or a script; the message is one line."""


@dataclass(frozen=True)
class Cell:
    number: int  # 1-based, every cell of the notebook counted, markdown included
    execution_count: int | None
    source: str
    filename: str  # what tracebacks show for this cell

    def where(self, line: int | None = None, script: bool = False) -> str:
        if script:
            return f"line {line}" if line else "the script"
        label = f"cell {self.number}" + (f" (In [{self.execution_count}])" if self.execution_count else "")
        return f"{label}, line {line}" if line else label


@dataclass(frozen=True)
class Skipped:
    """Code the module does not run, and why."""

    where: str
    code: str  # its first line
    reason: str
    cell: int
    lines: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "lines": list(self.lines), "where": self.where, "code": self.code,
                "reason": self.reason}  # fmt: skip


class Kind(enum.Enum):
    DEFINITION = "definition"
    IMPORT = "import"
    ASSIGNMENT = "assignment"  # or an if/try of nothing but assignments, imports and definitions
    CODE = "code"


@dataclass
class _Statement:
    cell: Cell
    node: ast.stmt
    binds: frozenset[str]
    uses: frozenset[str]
    kind: Kind
    index: int  # its place in its cell's parsed body

    @property
    def defines(self) -> bool:
        """A definition or an import: grading always runs it."""
        return self.kind in (Kind.DEFINITION, Kind.IMPORT)

    @property
    def line(self) -> int:
        return _start(self.node)

    @property
    def lines(self) -> tuple[int, int]:
        return self.line, getattr(self.node, "end_lineno", None) or self.node.lineno

    @property
    def code(self) -> str:
        """Its first line, shortened."""
        text = self.cell.source.splitlines()[self.line - 1].strip()
        return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Plan:
    """What of the notebook runs, what is skipped, and which names only skipped code binds."""

    path: Path
    script: bool
    cells: list[Cell]
    run: list[_Statement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    bound_only_by: dict[str, Skipped] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # each cell's source as parsed (magics as `pass`)

    def entry(self, cell: Cell, lines: tuple[int, int], code: str, reason: str) -> Skipped:
        return Skipped(cell.where(lines[0], self.script), code, reason, cell.number, lines)

    def skip(self, cell: Cell, lines: tuple[int, int], code: str, reason: str, binds=()) -> None:
        entry = self.entry(cell, lines, code, reason)
        self.skipped.append(entry)
        for name in binds:
            self.bound_only_by.setdefault(name, entry)


@dataclass
class Notebook:
    """A notebook's definitions, built in its worker: what raised there, and the names they bound."""

    plan: Plan
    worker: Worker
    names: frozenset[str]  # what the built module binds
    failed: list[Skipped]  # statements that raised while the module was built

    @property
    def label(self) -> str:
        return self.plan.path.name

    def missing(self, name: str) -> str:
        """Why `name` is not in the module, in one line."""
        entry = self.plan.bound_only_by.get(name)
        if entry is None:
            return f"{name} is not defined in {self.label}: no top-level def, class or import binds it"
        return (
            f"{name} is not defined in {self.label}: {entry.where} (`{entry.code}`) would define it, but {entry.reason}"
        )

    def skipped_binding(self, name: str) -> Skipped | None:
        """The skipped statement that would bind `name`, where no run statement does."""
        return None if name in self.names else self.plan.bound_only_by.get(name)


def read_cells(path: Path) -> tuple[list[Cell], bool]:
    """The code cells of a notebook, or a script as one cell; the bool says it is a script."""
    if path.suffix == ".py":
        try:
            return [Cell(1, None, path.read_text(encoding="utf-8"), str(path))], True
        except (OSError, UnicodeDecodeError) as err:
            raise NotebookError(f"{path.name}: cannot read the script: {err}") from None
    import nbformat  # only grading needs it

    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookError(f"{path.name}: cannot read the file: {err}") from None
    except Exception as err:  # nbformat raises several kinds, JSON and schema errors among them
        raise NotebookError(f"{path.name} is not a Jupyter notebook: {one_line(err)}") from None
    cells = []
    for number, cell in enumerate(notebook.get("cells", []), 1):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            cells.append(Cell(number, cell.get("execution_count"), source, f"{path.name}, cell {number}"))
    return cells, False


def plan(path: Path) -> Plan:
    """Read the notebook and decide, statement by statement, what runs; runs nothing."""
    cells, script = read_cells(path)
    result = Plan(path, script, cells)
    statements = [s for cell in cells for s in _statements(cell, result)]
    defined = {name for s in statements if s.defines for name in s.binds}
    available = defined | set(dir(builtins)) | {"__name__", "__file__"}
    chosen: set[int] = set()
    blocked: dict[int, str] = {}  # a needed assignment that cannot run -> a name it needs that nothing run binds

    def resolve(name: str, seen: frozenset[str]) -> bool:
        """Bind `name` with a needed assignment whose own uses resolve too: the last such in the notebook,
        as its functions see it once every cell has run."""
        if name in available:
            return True
        if name in seen:
            return False
        for i, s in reversed(list(enumerate(statements))):
            if s.kind is Kind.ASSIGNMENT and name in s.binds and not _calls_heavy(s.node):
                missing = next((use for use in sorted(s.uses - s.binds) if not resolve(use, seen | {name})), None)
                if missing is None:
                    chosen.add(i)
                    available.update(s.binds)
                    return True
                blocked.setdefault(i, missing)
        return False

    for s in statements:
        if s.defines:
            for use in sorted(s.uses):
                resolve(use, frozenset())
    for i, s in enumerate(statements):
        if s.defines or i in chosen:
            result.run.append(s)
        else:
            if s.kind is Kind.ASSIGNMENT and _calls_heavy(s.node):
                reason = "it loads data or trains, which grading never runs"
            elif i in blocked:
                reason = f"it needs `{blocked[i]}`, which only code that grading does not run binds"
            else:
                reason = "it is top-level code, which grading does not run"
            result.skip(s.cell, s.lines, s.code, reason, s.binds)
    result.skipped.sort(key=lambda entry: (entry.cell, entry.lines))
    return result


def _statements(cell: Cell, result: Plan) -> Iterator[_Statement]:
    lines = cell.source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        result.skip(cell, (1, len(lines)), lines[0].strip(), "it is a cell magic, which grading does not run")
        return
    source = cell.source if cell.source.endswith("\n") else cell.source + "\n"
    try:
        tree = ast.parse(source, filename=cell.filename)
    except SyntaxError as err:
        # IPython syntax makes a cell unparseable: parse again with its magic, shell and help lines as `pass`.
        magics = [(n, line) for n, line in enumerate(lines, 1) if _MAGIC.match(line)]
        stripped = list(lines)
        for n, line in magics:
            stripped[n - 1] = f"{_MAGIC.match(line)[1]}pass"
        source = "\n".join(stripped) + "\n"
        try:
            tree = ast.parse(source, filename=cell.filename) if magics else None
        except SyntaxError:
            tree = None
        if tree is None:
            reason = f"it has a SyntaxError at line {err.lineno}: {err.msg}"
            names = {a or b for a, b in _DEFINES.findall(cell.source)}
            line = lines[(err.lineno or 1) - 1].strip() if lines and err.lineno else ""
            result.skip(cell, (err.lineno or 1, len(lines)), line, reason, names)
            return
        for n, line in magics:
            result.skip(cell, (n, n), line.strip(), "it is an IPython magic, shell or help line")
    result.sources[cell.filename] = source
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.Pass):  # nothing to run (where a magic was, among others)
            continue
        binds, uses = _names(node)
        yield _Statement(cell, node, binds, uses, _kind(node), index)


def _kind(node: ast.stmt) -> Kind:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return Kind.DEFINITION
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return Kind.IMPORT
    return Kind.ASSIGNMENT if _only_bindings(node) else Kind.CODE


def _only_bindings(node: ast.stmt) -> bool:
    """An assignment, or an if/try made of nothing but assignments, imports and definitions."""
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return True
    if isinstance(node, (ast.If, ast.Try)):
        bodies = [node.body, node.orelse] + (
            [node.finalbody, *(handler.body for handler in node.handlers)] if isinstance(node, ast.Try) else []
        )
        return all(
            isinstance(s, (ast.Pass, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) or _only_bindings(s)
            for body in bodies
            for s in body
        )
    return False


def _names(node: ast.stmt) -> tuple[frozenset[str], frozenset[str]]:
    """What a top-level statement binds, and the global names it (or any function inside it) reads."""
    table = symtable.symtable(ast.unparse(node), "<statement>", "exec")
    binds = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    uses = {s.get_name() for s in table.get_symbols() if s.is_referenced()}

    def nested(scope: symtable.SymbolTable) -> None:
        for child in scope.get_children():
            uses.update(s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced())
            nested(child)

    nested(table)
    return frozenset(binds), frozenset(uses)


def _calls_heavy(node: ast.stmt) -> bool:
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in HEAVY_CALLS:
                return True
    return False


def _start(node: ast.stmt) -> int:
    """A statement's first line, its decorators included."""
    decorators = getattr(node, "decorator_list", None)
    return decorators[0].lineno if decorators else node.lineno


def course_tools() -> types.ModuleType:
    """The course's MNISTtools, served by mnist_lab."""
    import mnist_lab

    module = types.ModuleType(COURSE_MODULE, "The course's MNISTtools, as mnist_lab serves them for grading.")

    def load(dataset: str = "training", path: str | None = None) -> tuple[Any, Any]:
        """(784, N) uint8 images and (N,) labels of the embedded MNIST; `path` is the notebook's, and ignored."""
        return mnist_lab.load(dataset)

    module.load = load
    module.show = mnist_lab.show
    return module


def build(notebook_plan: Plan, worker: Worker | None = None, data: Path | None = None) -> Notebook:
    """Run the planned statements, in notebook order, in a fresh sandboxed worker (spec/sandbox) that may
    map the prepared MNIST in `data`, or in `worker`, one already spawned for this notebook."""
    from spec.sandbox.client import Worker, WorkerError

    plan = notebook_plan
    cells = [{"filename": c.filename, "source": plan.sources[c.filename], "label": c.where(), "script": plan.script}
             for c in plan.cells if c.filename in plan.sources]  # fmt: skip
    statements = [{"filename": s.cell.filename, "index": s.index} for s in plan.run]
    worker = worker or Worker(hidden=[plan.path.resolve().parent], data=data)
    try:
        defined = worker.define({"op": "define", "file": plan.path.name, "cells": cells, "statements": statements})
    except WorkerError as failure:
        worker.close()
        raise NotebookError(f"{plan.path.name}: building its definitions {failure}") from None
    names = frozenset(defined["names"])
    failed = []
    for error in defined["failed"]:
        s = plan.run[error["position"]]
        reason = f"it raised {error['type']}: {error['message']} when the notebook was imported"
        entry = plan.entry(s.cell, s.lines, s.code, reason)
        failed.append(entry)
        for bound in s.binds - names:
            plan.bound_only_by[bound] = entry
    return Notebook(plan, worker, names, failed)
