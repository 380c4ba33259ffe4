"""Modules looked up, never imported: is this module in use, and then, the module whole."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Optional

__all__ = ["loaded_module"]


def loaded_module(name: str) -> Optional[ModuleType]:
    """The module if something imported it already, else None (it is not imported here).

    A plain ``sys.modules`` lookup can return a module another thread is still initializing
    (``AttributeError: partially initialized module``); the import statement waits for it.
    """
    if name not in sys.modules:
        return None
    import importlib

    return importlib.import_module(name)
