"""Every hook a minipub plugin can implement: ``from minipub.hookspecs import hookimpl``.

The specifications, their kinds and what they see are in :mod:`minipub.hooks.specs` (the page
a plugin author reads); this is the import path plugins use. It imports pluggy.
"""

from __future__ import annotations

from .hooks.specs import (
    HOOK_KINDS,
    KINDS,
    PROJECT,
    AttemptInfo,
    PublishInfo,
    hookimpl,
    hookspec,
    minipub_attempt,
    minipub_auth,
    minipub_publish,
    minipub_retry_decision,
    minipub_transport,
)

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "minipub_transport",
    "minipub_auth",
    "minipub_publish",
    "minipub_attempt",
    "minipub_retry_decision",
    "PublishInfo",
    "AttemptInfo",
    "KINDS",
    "HOOK_KINDS",
]
