"""Every hook a minipub plugin can implement: ``from minipub.hookspecs import hookimpl``.

The specifications, their kinds and what they see (``PublishInfo``, ``AttemptInfo``) are in
:mod:`minipub.hooks.specs`, the page a plugin author reads; this is the import path plugins use.
It imports pluggy.
"""

from __future__ import annotations

from .hooks.specs import (
    PROJECT,
    hookimpl,
    hookspec,
    minipub_attempt,
    minipub_auth,
    minipub_publish,
    minipub_retry_decision,
    minipub_transport,
)
from .hooks.specs import AttemptInfo as AttemptInfo  # for plugins' type annotations
from .hooks.specs import PublishInfo as PublishInfo

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "minipub_transport",
    "minipub_auth",
    "minipub_publish",
    "minipub_attempt",
    "minipub_retry_decision",
]
