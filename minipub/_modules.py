"""Modules looked up, never imported: is this module in use, and then, the module whole."""

from __future__ import annotations

import importlib
import sys
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
    return importlib.import_module(name)
