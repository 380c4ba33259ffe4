"""The publish fields as TypedDicts, for type checkers and IDEs (PEP 692 ``Unpack``); ``fields.py``
re-exports them (loaded on first access) and holds what runs."""

from __future__ import annotations

from typing import Any, Mapping, Optional, TypedDict

TYPE_CHECKING = False  # typing.TYPE_CHECKING (mypy reads it the same way)
if TYPE_CHECKING:
    from .request import TimeLike
    from .retry import RetryConfig

__all__ = ["EventFields", "PublishOptions", "EventCall"]


class _Tenant(TypedDict):
    tenant_id: str


class EventFields(_Tenant, total=False):
    """The event's own fields besides ``topic`` and ``data`` (those are positional in ``publish``)."""

    eligible_for_retry: bool
    destination_id: Optional[str]
    metadata: Optional[Mapping[str, str]]
    id: Optional[str]
    time: Optional[TimeLike]


class PublishOptions(EventFields, total=False):
    """:class:`EventFields` and how this one publish is sent."""

    retries: Optional[RetryConfig]
    timeout_ms: Optional[float]
    http_headers: Optional[Mapping[str, str]]


class _TopicAndData(TypedDict):
    topic: str
    data: Mapping[str, Any]


class EventCall(PublishOptions, _TopicAndData):
    """``SDK.publish.event``'s arguments: all keywords, as in the Outpost SDK."""
