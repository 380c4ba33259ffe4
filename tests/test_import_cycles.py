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
from typing import Dict, FrozenSet, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "minipub"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> Dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


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


def _reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen: Set[str] = set()
    stack = list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return seen


def _path(graph: Dict[str, Set[str]], group: FrozenSet[str]) -> List[str]:
    """The shortest cycle through the group's first module, staying inside the group (breadth first)."""
    start = min(group)
    came_from: Dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle in {sorted(group)}")


def find_cycles(graph: Dict[str, Set[str]]) -> Dict[FrozenSet[str], List[str]]:
    """Each group of modules that import one another (directly or not), with one cycle through it."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {frozenset({node} | {other for other in reach[node] if node in reach[other]})
              for node in graph if node in reach[node]}
    return {group: _path(graph, group) for group in sorted(groups, key=min)}


def runtime_graph(root: Path = ROOT) -> Dict[str, Set[str]]:
    return {name: {t for t, typing_only in targets.items() if not typing_only}
            for name, targets in edges(modules(root)).items()}


def full_graph(root: Path = ROOT) -> Dict[str, Set[str]]:
    return {name: set(targets) for name, targets in edges(modules(root)).items()}


def _described(cycles: Dict[FrozenSet[str], List[str]]) -> str:
    return "; ".join(" -> ".join(path) for path in cycles.values())


def test_no_import_cycle_at_run_time() -> None:
    cycles = find_cycles(runtime_graph())
    assert cycles == {}, f"import cycles (imports that run): {_described(cycles)}"


def test_no_import_cycle_with_type_checking_imports() -> None:
    """Imports under TYPE_CHECKING never run, but they are what a reader and mypy follow: no circle there either."""
    cycles = find_cycles(full_graph())
    assert cycles == {}, f"import cycles (TYPE_CHECKING imports included): {_described(cycles)}"


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
    graph = edges(modules(tmp_path))
    assert graph["minipub.a"] == {"minipub.sub.b": True}
    assert graph["minipub.sub.b"] == {"minipub.c": False}
    assert graph["minipub.c"] == {"minipub.a": False}
    assert find_cycles(runtime_graph(tmp_path)) == {}  # the typing-only edge breaks it at run time
    assert list(find_cycles(full_graph(tmp_path)).values()) == [["minipub.a", "minipub.sub.b", "minipub.c", "minipub.a"]]
