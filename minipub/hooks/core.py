"""The core's own call, registered as the innermost implementation of the wrapper hooks.

The observed path puts the call (the publish, or the HTTP request) in the info object the hook
is given; pluggy runs every wrapper around this implementation, which runs it once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from .specs import hookimpl

if TYPE_CHECKING:
    from .specs import AttemptInfo, PublishInfo

@hookimpl(trylast=True)
def minipub_publish(publish: PublishInfo) -> object:
    return publish._execute()


@hookimpl(trylast=True)
def minipub_attempt(attempt: AttemptInfo) -> object:
    return attempt._execute()


def __dir__() -> List[str]:
    # pluggy looks at every name ``dir()`` gives at each registration (~3 us a name): only these two.
    return ["minipub_publish", "minipub_attempt"]
