"""No import cycle among doxa's modules: the tree reads in the direction of the flow.

The graph is built from each module's source: every `import` / `from ... import` executed
when the module loads (module level, including `try` blocks and `if` branches other than
`if TYPE_CHECKING:`). Imports inside functions are left out: they run later, on purpose
(an optional extra, a heavy dependency only one command needs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import doxa

SRC = Path(doxa.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _load_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _load_time_imports(node.body)
            found += _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                found += _load_time_imports(block)
        elif isinstance(node, ast.With):
            found += _load_time_imports(node.body)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each doxa module -> the doxa modules it imports while loading.

    `from package import name` counts as importing `package.name` when that is a module,
    and always as importing `package` (its __init__ runs first)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in _load_time_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, is_package, node)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                # importing a.b.c loads a and a.b first
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:i])
                    if candidate in modules and candidate != name:
                        edges.add(candidate)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path a -> b -> ... -> a, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# A package's __init__ importing its own submodules (to re-export them) is how Python
# packages work, not a cycle in the flow: doxa/__init__ -> doxa.engine -> ... -> doxa.errors
# would otherwise count as doxa.errors -> doxa (its parent package) -> doxa.engine.
def _without_parent_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: {t for t in edges if not name.startswith(t + ".")}
            for name, edges in graph.items()}


def test_no_import_cycle_between_doxa_modules() -> None:
    graph = _without_parent_package_edges(import_graph(_modules()))
    assert len(graph) > 60  # the walk saw the whole tree
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_walk_finds_a_cycle_and_skips_type_checking_imports() -> None:
    """The checker itself: a two-module loop is found; a TYPE_CHECKING-only one is not."""
    source = {
        "pkg.a": "from pkg.b import thing\n",
        "pkg.b": "import os\ntry:\n    from pkg import a\nexcept ImportError:\n    pass\n",
        "pkg.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import X\n",
        "pkg.d": "from pkg.c import Y\n\ndef later():\n    from pkg.c import Z\n",
    }
    graph: dict[str, set[str]] = {}
    for name, text in source.items():
        graph[name] = set()
        for node in _load_time_imports(ast.parse(text).body):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            graph[name] |= {n for n in names if n in source and n != name}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    del graph["pkg.a"], graph["pkg.b"]
    assert find_cycle(graph) is None
