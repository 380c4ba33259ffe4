"""No import cycle inside minipub: imports flow one way (core ← hooks ← background ← cli).

Every module of the package is parsed (``ast``, nothing imported), relative imports resolved, and
two graphs are checked:

* the runtime graph: every import that can run, module level or inside a function (a lazy import
  closes a cycle as surely as a top-level one, only later, in whichever thread gets there first);
* the full graph: the same plus the imports under ``if TYPE_CHECKING:``. They never run, but they
  are the dependencies a reader and mypy follow; a cycle there is a circle in the design (a module
  typed against one that imports it back), which is why it is checked too, and reported apart so
  that a failure says which kind it is.

An import of ``a.b`` counts as an edge to ``a.b`` only, not to the package ``a`` it implicitly
initialises: every module would otherwise "depend" on ``minipub/__init__.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "minipub"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, typing_only: bool) -> Iterator[Tuple[ast.AST, bool]]:
    """Every import statement under ``node``, and whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, typing_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _imports(ast.Module(body=[statement], type_ignores=[]), True)
            for statement in child.orelse:
                yield from _imports(ast.Module(body=[statement], type_ignores=[]), typing_only)
        else:
            yield from _imports(child, typing_only)


def _resolve(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (``from .x import y`` in ``minipub.a`` → ``minipub.x``)."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def edges(known: Dict[str, Path]) -> Dict[str, Dict[str, bool]]:
    """module → {imported module of the package: imported only for type checking}."""
    graph: Dict[str, Dict[str, bool]] = {}
    for name, path in known.items():
        targets: Dict[str, bool] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, typing_only in _imports(tree, False):
            found: List[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, path.name == "__init__.py", node)
                found = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                         for alias in node.names]
            for target in found:
                if target in known and target != name:
                    targets[target] = targets.get(target, True) and typing_only
        graph[name] = targets
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected part of the graph that has one, else []."""
    cycles: List[List[str]] = []
    done: Set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, stack, on_path = [start], [iter(sorted(graph[start]))], {start}
        while stack:  # iterative depth-first search from ``start``
            target = next(stack[-1], None)
            if target is None:
                done.add(path[-1])
                on_path.discard(path.pop())
                stack.pop()
            elif target in on_path:
                cycle = [*path[path.index(target):], target]
                if not any(set(cycle) <= set(known) for known in cycles):
                    cycles.append(cycle)
            elif target not in done:
                path.append(target)
                on_path.add(target)
                stack.append(iter(sorted(graph.get(target, ()))))
    return cycles


def runtime_graph() -> Dict[str, Set[str]]:
    return {name: {t for t, typing_only in targets.items() if not typing_only}
            for name, targets in edges(modules()).items()}


def full_graph() -> Dict[str, Set[str]]:
    return {name: set(targets) for name, targets in edges(modules()).items()}


@pytest.mark.parametrize("kind, graph", [("runtime", runtime_graph), ("with TYPE_CHECKING", full_graph)])
def test_no_import_cycle(kind: str, graph: object) -> None:
    assert callable(graph)
    cycles = find_cycles(graph())
    assert cycles == [], f"import cycles ({kind} imports): " + "; ".join(" -> ".join(c) for c in cycles)


# -- the checker itself -----------------------------------------------------------------------------


def test_the_checker_finds_a_cycle_through_a_lazy_or_typing_import(tmp_path: Path) -> None:
    """The adversary: a cycle hidden in a function body and under TYPE_CHECKING, through relative imports."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import A\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\nA = 1\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import C\n    return C\n")
    (package / "c.py").write_text("import os\nfrom . import a\nC = a.A\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        known = modules()
        graph = edges(known)
        assert graph["minipub.a"] == {"minipub.sub.b": True}
        assert graph["minipub.sub.b"] == {"minipub.c": False}
        assert graph["minipub.c"] == {"minipub.a": False}
        assert find_cycles(runtime_graph()) == []  # the typing-only edge breaks it at run time
        assert find_cycles(full_graph()) == [["minipub.a", "minipub.sub.b", "minipub.c", "minipub.a"]]
    finally:
        ROOT = saved
