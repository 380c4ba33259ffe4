"""The plugin manager's old import path: :mod:`minipub.hooks.manager` and :mod:`minipub.hooks.entrypoints`.

``HOOK_KINDS`` and ``OBSERVE_HOOKS`` are read from the specifications (:mod:`minipub.hooks.specs`)
on first access, which imports pluggy; the rest does not.
"""

from __future__ import annotations

from typing import Any

from .hooks.entrypoints import AUTOLOAD_ENV, ENTRY_POINT_GROUP, autoloaded, pluggy_installed, reset_autoload
from .hooks.manager import INSTALL_HINT, Plugins, load_plugins

__all__ = ["Plugins", "load_plugins", "ENTRY_POINT_GROUP", "AUTOLOAD_ENV", "INSTALL_HINT", "autoloaded",
           "reset_autoload", "pluggy_installed"]


def __getattr__(name: str) -> Any:
    if name in ("HOOK_KINDS", "OBSERVE_HOOKS"):
        from .hooks import specs

        return getattr(specs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
