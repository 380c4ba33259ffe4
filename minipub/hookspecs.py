"""Every hook a minipub plugin can implement: ``from minipub.hookspecs import hookimpl``.

The specifications, their kinds and what they see (``PublishInfo``, ``AttemptInfo``) are in
:mod:`minipub.hooks.specs`, the page a plugin author reads; this is the import path plugins use.
It imports pluggy.
"""

from __future__ import annotations

from .hooks import specs as _specs
from .hooks.specs import *  # noqa: F403  (the specifications, hookimpl, hookspec, PROJECT)
from .hooks.specs import AttemptInfo as AttemptInfo  # for plugins' type annotations
from .hooks.specs import PublishInfo as PublishInfo

__all__ = _specs.__all__
