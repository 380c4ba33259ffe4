"""minipub: a small, dependency-free client for publishing events to Hookdeck Outpost.

    import minipub
    minipub.publish("user.created", {"id": 1}, tenant_id="acme")
"""

from __future__ import annotations

from ._version import __version__
from .oneliner import default_client, publish, publish_async, reset_default_client

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:  # every public name loads on first access (_LAZY, __getattr__); tests/test_modules.py keeps
    # these imports, which give type checkers the names, equal to _LAZY
    from typing import Any

    from . import errors as errors
    from .client import SDK as SDK
    from .client import Publish as Publish
    from .errors import APIError as APIError
    from .errors import BadRequestError as BadRequestError
    from .errors import ConfigurationError as ConfigurationError
    from .errors import InternalServerError as InternalServerError
    from .errors import MinipubError as MinipubError
    from .errors import NotFoundError as NotFoundError
    from .errors import OutboxError as OutboxError
    from .errors import PublisherClosedError as PublisherClosedError
    from .errors import QueueFullError as QueueFullError
    from .errors import RateLimitedError as RateLimitedError
    from .errors import TimeoutErrorT as TimeoutErrorT
    from .errors import TransportError as TransportError
    from .errors import UnauthorizedError as UnauthorizedError
    from .errors import ValidationError as ValidationError
    from .models import Event as Event
    from .models import PublishResponse as PublishResponse
    from .outbox import DeadLetter as DeadLetter
    from .outbox import Outbox as Outbox
    from .outbox import OutboxEntry as OutboxEntry
    from .publisher import Publisher as Publisher
    from .publisher import PublisherStats as PublisherStats
    from .retry import BackoffStrategy as BackoffStrategy
    from .retry import RetryBudget as RetryBudget
    from .retry import RetryConfig as RetryConfig

#: Where each public name lives. Modules load on first access, so ``import minipub`` stays cheap:
#: no typing, re, threading, json or datetime until a client is made; no threads, sqlite3 or asyncio
#: until a Publisher or an Outbox is.
_LAZY = {
    "SDK": "client",
    "Publish": "client",
    "PublishResponse": "models",
    "Event": "models",
    "RetryConfig": "retry",
    "BackoffStrategy": "retry",
    "RetryBudget": "retry",
    "Publisher": "publisher",
    "PublisherStats": "publisher",
    "Outbox": "outbox",
    "OutboxEntry": "outbox",
    "DeadLetter": "outbox",
    "errors": "errors",
    **dict.fromkeys(
        ("MinipubError", "ValidationError", "ConfigurationError", "APIError", "NotFoundError", "UnauthorizedError",
         "TimeoutErrorT", "RateLimitedError", "BadRequestError", "InternalServerError", "TransportError",
         "QueueFullError", "PublisherClosedError", "OutboxError"),
        "errors",
    ),
}


__all__ = ["__version__", "publish", "publish_async", "default_client", "reset_default_client", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module = import_module(f".{module_name}", __name__)
    value = module if name == module_name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
