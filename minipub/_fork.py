"""After ``os.fork()``: objects that hold threads, locks or sockets start fresh in the child.

An object registers itself and implements ``_after_fork_in_child()``; the hook runs in the
child, single-threaded, right after the fork. The parent is untouched.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import weakref

_objects: Optional[weakref.WeakSet[Any]] = None
_lock = threading.Lock()


def register(obj: Any) -> None:
    """Call ``obj._after_fork_in_child()`` in the child of every later fork (while obj lives)."""
    global _objects
    with _lock:
        if _objects is None:
            import weakref

            _objects = weakref.WeakSet()
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_run_in_child)
        _objects.add(obj)


def _run_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it at fork time
    for obj in list(_objects or ()):
        obj._after_fork_in_child()
