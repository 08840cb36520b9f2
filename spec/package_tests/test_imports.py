"""mnist_lab's modules import one another in one direction only: no module imports one that imports it
back, directly or through others (recipe.py holds what the engines and the loops that drive them share)."""

from __future__ import annotations

import ast
from pathlib import Path

import mnist_lab

PACKAGE = Path(mnist_lab.__file__).parent


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (under TYPE_CHECKING, inside a function):
    `from . import x` names module x where there is one, else the package's __init__."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if base in (".", "mnist_lab"):
                found.update(alias.name if alias.name in modules else "__init__" for alias in node.names)
            elif base.startswith((".", "mnist_lab.")):
                found.add(base.lstrip(".").removeprefix("mnist_lab.").split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mnist_lab."))
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    return {name: imported(PACKAGE / f"{name}.py", modules) - {name} for name in modules}


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that comes back to its start, or None: a depth-first search."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for other in sorted(graph[name]):
            found = visit(other, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    return next((found for name in sorted(graph) if (found := visit(name, []))), None)


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert graph["engines"] >= {"recipe"}, f"engines.py no longer reads recipes from recipe.py: {graph['engines']}"
    found = circle(graph)
    assert found is None, f"mnist_lab imports in a circle: {' -> '.join(found or [])}"


def test_the_search_finds_a_circle() -> None:
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
