"""The plugins of the ``minipub`` entry points: found once per process, cheaply.

``importlib.metadata`` takes ~19 ms to import (email, zipfile, csv, pathlib) and parses every
installed distribution's entry points; a process that only publishes pays it on its first
``SDK()``. So the distributions on ``sys.path`` are read directly, as importlib.metadata reads
them (``*.dist-info`` and ``*.egg-info`` directories, in ``sys.path`` order, the first of each
distribution name only), and only an ``entry_points.txt`` that names the group is parsed.
importlib.metadata itself is used where its answer could differ: a ``sys.path`` entry that is a
file (a zip) or an ``.egg``, or a finder on ``sys.meta_path`` that reports distributions of its
own; and to describe an entry point that failed to load.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from importlib import import_module

from .._charsets import LazyPattern
from ..errors import PluginError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Set, Tuple

__all__ = ["ENTRY_POINT_GROUP", "AUTOLOAD_ENV", "EntryPoint", "entry_points", "from_directories", "from_metadata",
           "autoloaded", "reset_autoload", "pluggy_installed"]

ENTRY_POINT_GROUP = "minipub"
AUTOLOAD_ENV = "MINIPUB_DISABLE_PLUGIN_AUTOLOAD"
#: importlib.metadata's reading of an entry point's value: ``module[:attr.attr] [extras]``.
_VALUE = LazyPattern(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")

#: importlib.metadata keeps the first distribution of each name from Python 3.10 on (3.9 reads every copy).
_UNIQUE = sys.version_info >= (3, 10)

_lock = threading.Lock()
_loaded: Optional[List[Tuple[str, object]]] = None


def pluggy_installed() -> bool:
    """Whether pluggy can be imported (checked without importing it)."""
    if "pluggy" in sys.modules:
        return True
    from importlib.util import find_spec

    return find_spec("pluggy") is not None


class EntryPoint:
    """``name = value`` in the group, and the distribution it comes from (a directory, or importlib's)."""

    __slots__ = ("dist", "name", "value")

    def __init__(self, name: str, value: str, dist: Any) -> None:
        self.name = name
        self.value = value
        self.dist = dist

    def load(self) -> object:
        """The object the value names, imported as ``importlib.metadata.EntryPoint.load`` does."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"{self.value!r} is not 'module' or 'module:attribute'")
        found: object = import_module(match.group("module"))
        for attr in filter(None, (match.group("attr") or "").split(".")):
            found = getattr(found, attr)
        return found

    def describe(self) -> str:
        """``name = value from Distribution 1.0``, for messages."""
        if isinstance(self.dist, str):
            headers = _headers(self.dist)
            name, version = headers.get("name"), headers.get("version")
        else:  # importlib's (None on Python 3.9)
            name, version = getattr(self.dist, "name", None), getattr(self.dist, "version", None)
        return f"{self.name} = {self.value}" + (f" from {name} {version}" if name else "")


def _headers(directory: str) -> Dict[str, str]:
    """The ``Name:``/``Version:`` headers of a distribution's METADATA (or PKG-INFO)."""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(directory, filename), encoding="utf-8") as file:
                text = file.read()
        except OSError:
            continue
        lines = text.split("\n\n", 1)[0].splitlines()
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return {}


def _group(text: str) -> List[Tuple[str, str]]:
    """The ``name = value`` pairs of the group's section, read as importlib.metadata reads them."""
    pairs, section = [], None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == ENTRY_POINT_GROUP and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def from_directories() -> Optional[List[EntryPoint]]:
    """The entry points, read from the directories on ``sys.path``; None when importlib.metadata must read them."""
    from importlib.machinery import PathFinder

    if any(finder is not PathFinder and hasattr(finder, "find_distributions") for finder in sys.meta_path):
        return None
    found: List[EntryPoint] = []
    seen: Set[str] = set()
    marker = f"[{ENTRY_POINT_GROUP}]"
    for entry in sys.path:
        if not isinstance(entry, str) or entry.lower().endswith(".egg"):
            return None
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.isfile(root):
                return None
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            dist_name = re.sub(r"[-_.]+", "_", low.rpartition(".")[0].partition("-")[0])
            if dist_name in seen and _UNIQUE:  # the same distribution further along sys.path: the first one wins
                continue
            seen.add(dist_name)
            directory = os.path.join(root, child)
            try:
                with open(os.path.join(directory, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except OSError:
                continue
            if marker in text:
                found += [EntryPoint(name, value, directory) for name, value in _group(text)]
    return found


def from_metadata() -> List[EntryPoint]:
    """The entry points as importlib.metadata reads them."""
    import importlib.metadata

    every = importlib.metadata.entry_points()
    group = every.select(group=ENTRY_POINT_GROUP) if hasattr(every, "select") else every.get(ENTRY_POINT_GROUP, ())
    return [EntryPoint(ep.name, ep.value, getattr(ep, "dist", None)) for ep in group]


def entry_points() -> List[EntryPoint]:
    """The group's entry points, one per name (the first found wins)."""
    found = from_directories()
    unique: Dict[str, EntryPoint] = {}
    for entry_point in from_metadata() if found is None else found:
        unique.setdefault(entry_point.name, entry_point)
    return list(unique.values())


def autoloaded() -> List[Tuple[str, object]]:
    """The plugins of the ``minipub`` entry points, as (name, object); loaded once per process.

    Empty without pluggy (nothing is scanned then). A plugin that fails to import raises
    :class:`PluginError` naming its entry point (and is tried again by the next ``SDK()``).
    """
    global _loaded
    loaded = _loaded
    if loaded is not None:
        return loaded
    with _lock:
        if _loaded is None:
            plugins: List[Tuple[str, object]] = []
            for entry_point in entry_points() if pluggy_installed() else ():
                try:
                    plugins.append((entry_point.name, entry_point.load()))
                except Exception as exc:
                    raise PluginError(
                        f"the minipub plugin entry point {entry_point.describe()!r} failed to load: "
                        f"{type(exc).__name__}: {exc} (set {AUTOLOAD_ENV}=1 to skip entry points)",
                        plugin=entry_point.name, hook="load",
                    ) from exc
            _loaded = plugins
        return _loaded


def automatic() -> List[Tuple[str, object]]:
    """The entry points' plugins a new client gets: none when ``MINIPUB_DISABLE_PLUGIN_AUTOLOAD`` is set."""
    return [] if os.environ.get(AUTOLOAD_ENV, "").strip() not in ("", "0") else autoloaded()


def reset_autoload() -> None:
    """Forget the loaded entry points: the next ``SDK()`` scans them again (for tests)."""
    global _loaded
    with _lock:
        _loaded = None
