"""The shape of the library, checked from its source: imports flow one way, modules stay small.

The import graph is read with ``ast`` (function-level imports included), so a lazy import
cannot hide a loop or a dependency on the web layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "qa"
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The ``qa``/``web`` modules ``path`` imports, resolved to modules that exist."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from qa.index import storage" imports the module qa.index.storage.
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            if name.split(".")[0] not in ("qa", "web"):
                continue
            while name and name not in known and not name.startswith("web"):
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def library_graph() -> dict[str, set[str]]:
    files = sorted(LIBRARY.rglob("*.py"))
    known = {module_name(p) for p in files}
    graph = {module_name(p): imported_modules(p, known) for p in files}
    # A package's __init__ is imported on the way to any of its modules; that is not an edge.
    return {
        m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in graph.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_sees_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_reader_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from qa.index import storage\n"
        "def f():\n    from web.app import create_app\n    import qa.ask.service\n",
        encoding="utf-8",
    )
    known = {"qa", "qa.index", "qa.index.storage", "qa.ask", "qa.ask.service"}
    assert imported_modules(src, known) >= {"qa.index.storage", "qa.ask.service", "web.app"}


def test_library_has_no_import_cycle() -> None:
    assert find_cycle(library_graph()) is None


def test_library_never_imports_the_web_layer() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith("web")) for m, deps in library_graph().items()
    }
    assert {m: d for m, d in offenders.items() if d} == {}


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: module_name(p))
def test_module_is_small_and_says_what_it_owns(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    if path.name != "__main__.py":
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring, f"{path} has no module docstring"
        assert docstring.splitlines()[0].strip().endswith((".", ":")), "first line is one sentence"


MAX_FUNCTION_LINES = 60
REASON = "# Long:"


def long_functions_without_a_reason(source: str) -> list[str]:
    """Functions over :data:`MAX_FUNCTION_LINES` lines with no ``# Long:`` comment inside."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            body = lines[node.lineno - 1 : node.end_lineno]
            if len(body) > MAX_FUNCTION_LINES and not any(
                line.strip().startswith(REASON) for line in body
            ):
                out.append(node.name)
    return out


def test_long_function_rule_sees_a_long_function() -> None:
    filler = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions_without_a_reason(f"def f():\n{filler}") == ["f"]
    assert long_functions_without_a_reason(f"def f():\n    {REASON} why\n{filler}") == []


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: module_name(p))
def test_long_library_functions_say_why(path: Path) -> None:
    assert long_functions_without_a_reason(path.read_text(encoding="utf-8")) == []
