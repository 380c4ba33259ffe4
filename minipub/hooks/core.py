"""The core's own call, registered as the innermost implementation of the wrapper hooks.

The observed path puts the call (the publish, or the HTTP request) in the info object the hook
is given; pluggy runs every wrapper around this implementation, which runs it once.
"""

from __future__ import annotations

from typing import Any

from .specs import AttemptInfo, PublishInfo, hookimpl

__all__ = ["NAME", "minipub_publish", "minipub_attempt"]

#: The name it is registered under (not listed among a client's plugins).
NAME = "minipub.core"


@hookimpl(trylast=True)
def minipub_publish(publish: PublishInfo) -> Any:
    return publish._execute()


@hookimpl(trylast=True)
def minipub_attempt(attempt: AttemptInfo) -> Any:
    return attempt._execute()
