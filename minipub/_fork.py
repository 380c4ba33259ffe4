"""Around ``os.fork()``: objects that hold threads, locks, sockets or SQLite connections stay safe.

An object registers itself and implements ``_after_fork_in_child()`` (run in the child,
single-threaded, right after the fork) and, if it must quiesce first, ``_before_fork()`` and
``_after_fork_in_parent()`` (run in the forking thread just before and after the fork).
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    import weakref
    from typing import Any, List, Optional

_objects: Optional[weakref.WeakSet[Any]] = None
_lock = threading.Lock()
_forking: List[Any] = []


def register(obj: Any) -> None:
    """Run ``obj``'s fork hooks around every later fork (while obj lives)."""
    global _objects
    with _lock:
        if _objects is None:
            import weakref

            _objects = weakref.WeakSet()
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
        _objects.add(obj)


def _before() -> None:
    with _lock:
        _forking[:] = [obj for obj in list(_objects or ()) if hasattr(obj, "_before_fork")]
    for obj in _forking:
        obj._before_fork()


def _after_in_parent() -> None:
    for obj in reversed(_forking):
        obj._after_fork_in_parent()
    _forking.clear()


def _after_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it at fork time
    _forking.clear()
    for obj in list(_objects or ()):
        obj._after_fork_in_child()
