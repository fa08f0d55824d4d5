"""The shape of the code as a checked rule: small modules, short functions, no import cycles.

Import-linter (``make lint``) checks the layers; this checks what it does not: that no two
modules of ``src/veracity`` import each other through any chain, and the size limits. An
exception is listed here with its reason, or it is not an exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[2] / "src" / "veracity"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# module path (relative to src/veracity) -> why it may be longer
MODULE_EXCEPTIONS: dict[str, str] = {}
# "module:function" -> why it may be longer
FUNCTION_EXCEPTIONS: dict[str, str] = {}

# Import cycles allowed, each sorted, with its reason beside it (none today).
KNOWN_CYCLES: list[list[str]] = []


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _long_functions(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[f"{path.relative_to(SRC).as_posix()}:{node.name}"] = length
    return found


def test_no_module_is_over_the_line_limit() -> None:
    too_long = {
        p.relative_to(SRC).as_posix(): _lines(p) for p in _modules() if _lines(p) > MAX_MODULE_LINES
    }
    assert {k: v for k, v in too_long.items() if k not in MODULE_EXCEPTIONS} == {}
    # An exception that no longer applies is removed, so the list stays true.
    assert sorted(set(MODULE_EXCEPTIONS) - set(too_long)) == []


def test_no_function_is_over_the_line_limit() -> None:
    too_long: dict[str, int] = {}
    for path in _modules():
        too_long |= _long_functions(path)
    assert {k: v for k, v in too_long.items() if k not in FUNCTION_EXCEPTIONS} == {}
    assert sorted(set(FUNCTION_EXCEPTIONS) - set(too_long)) == []


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_in_src() -> None:
    graph = grimp.build_graph("veracity")
    # A package's __init__ is only its docstring here; cycles are between modules.
    modules = {m for m in graph.modules if m.startswith("veracity")}
    assert [c for c in _cycles(graph, modules) if c not in KNOWN_CYCLES] == []
    assert [c for c in KNOWN_CYCLES if c not in _cycles(graph, modules)] == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph, {"a.x", "a.y", "a.z"}) == [["a.x", "a.y"]]
