"""``minipub``'s public names: one runtime table (``_LAZY``), mirrored for type checkers, all resolvable."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict

import minipub


def _type_checking_names() -> Dict[str, str]:
    tree = ast.parse(Path(minipub.__file__).read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    names: Dict[str, str] = {}
    for node in block.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                if alias.asname == alias.name:  # "X as X": an explicit re-export, what type checkers see
                    names[alias.name] = node.module or alias.name
    return names


def test_the_type_checkers_names_are_the_runtime_table() -> None:
    assert _type_checking_names() == minipub._LAZY


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in minipub.__all__:
        assert getattr(minipub, name) is not None, name
    assert set(minipub.__all__) <= set(dir(minipub))
    assert len(minipub.__all__) == len(set(minipub.__all__))


def test_every_subpackage_is_in_the_distribution() -> None:
    """pyproject.toml lists the packages by name: a new subpackage missing there is missing from the wheel."""
    import re

    root = Path(minipub.__file__).parent
    listed = re.search(r"^packages = \[(.*)\]$", (root.parent / "pyproject.toml").read_text(), re.M)
    assert listed is not None
    found = {"minipub", *("minipub." + p.parent.name for p in root.glob("*/__init__.py"))}
    assert set(re.findall(r'"([\w.]+)"', listed.group(1))) == found
