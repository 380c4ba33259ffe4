"""Build a publish request: validate every argument, then encode the body once.

All checks run before any network call; each error names the field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._charsets import LazyPattern, is_field_value, is_token
from ._ids import new_event_id
from .encoding import encode_envelope, encode_event, format_datetime, loaded_datetime, show
from .errors import ValidationError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it the same way)
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Dict, List, Optional, Tuple, Union

    TimeLike = Union[datetime, str]

__all__ = ["PublishRequest", "build_publish_request", "new_event_id", "check_headers"]

_RFC3339 = LazyPattern(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))\Z"
)


def __getattr__(name: str) -> Any:
    if name == "TimeLike":  # for annotations at run time (typing and datetime are imported only then)
        from datetime import datetime
        from typing import Union

        return Union[datetime, str]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Headers minipub sets itself; ``http_headers`` may not replace them.
RESERVED_HEADERS = frozenset(
    {"authorization", "content-length", "content-type", "host", "transfer-encoding", "connection"}
)


class PublishRequest:
    """A validated publish: the event id and the encoded JSON body, ready for every attempt."""

    __slots__ = ("body", "event_id", "headers", "tenant_id", "topic")

    def __init__(self, event_id: str, body: bytes, headers: Dict[str, str], tenant_id: str, topic: str) -> None:
        self.event_id = event_id
        self.body = body
        self.headers = headers
        self.tenant_id = tenant_id
        self.topic = topic

    def __repr__(self) -> str:
        return f"PublishRequest(event_id={self.event_id!r}, tenant_id={self.tenant_id!r}, topic={self.topic!r})"


def _text(field: str, value: Any, *, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a str, got {type(value).__name__}")
    if not value.strip():
        fix = "; leave it out (None) instead" if optional else ""
        raise ValidationError(f"{field} must be a non-empty str{fix}")
    return value


def _check_rfc3339(field: str, value: str) -> str:
    match = _RFC3339.match(value)
    if match is None:
        raise ValidationError(
            f"{field}: {show(value, 80)} is not an RFC 3339 date-time; use e.g. '2024-01-15T10:30:00Z'")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if second == 60:  # RFC 3339 allows a leap second; Go's parser (Outpost) does not
        raise ValidationError(f"{field}: {value!r} has second 60, which Outpost rejects; use :59")
    from datetime import datetime, timedelta, timezone

    try:
        datetime(year, month, day, hour, minute, second)
        if match.group(9) and int(match.group(11)) > 59:
            raise ValueError("offset minutes must be 00 to 59")
        if match.group(9):
            offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
            timezone(offset)
    except ValueError as exc:
        raise ValidationError(f"{field}: {show(value, 80)} is not a valid date-time ({exc})") from None
    normal = value[:10] + "T" + value[11:]
    return normal[:-1] + "Z" if normal[-1] == "z" else normal


def _time(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return _check_rfc3339("time", value)
    dates = loaded_datetime()
    if dates is not None and isinstance(value, dates.datetime):
        return format_datetime(value, field="time")
    raise ValidationError(f"time must be an aware datetime or an RFC 3339 str, got {type(value).__name__}")


def _metadata(value: Any) -> Optional[Dict[str, str]]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"metadata must be a mapping of str to str, got {type(value).__name__}")
    items = _items("metadata", value)
    for key, item in items:
        if not isinstance(key, str):
            raise ValidationError(f"metadata key {show(key)} is a {type(key).__name__}; metadata keys must be str")
        if not isinstance(item, str):
            raise ValidationError(
                f"metadata[{show(key)}] is a {type(item).__name__}; Outpost accepts only str values "
                "(convert it with str())"
            )
    return dict(items)


def _items(field: str, value: Mapping[Any, Any]) -> List[Tuple[Any, Any]]:
    """A mapping's items, read once; a mapping that raises is the caller's bad input."""
    try:
        return list(value.items())
    except Exception as exc:
        raise ValidationError(f"{field}: reading it raised {type(exc).__name__}: {show(exc, 200)}") from exc


def check_headers(headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """Validate extra request headers: token names, latin-1 values without control characters, not
    one minipub sets. A value is never echoed in the error (it may be a credential)."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationError(f"http_headers must be a mapping of header name to str value, got "
                              f"{type(headers).__name__}")
    out: Dict[str, str] = {}
    for name, value in _items("http_headers", headers):
        if not isinstance(name, str) or not is_token(name):
            raise ValidationError(f"http_headers: {show(name)} is not a valid header name (letters, digits, "
                                  "and !#$%&'*+-.^_`|~)")
        if not isinstance(value, str):
            raise ValidationError(f"http_headers[{name!r}] must be a str, got {type(value).__name__}")
        if not is_field_value(value):
            raise ValidationError(
                f"http_headers[{name!r}]: the value must be latin-1 text without control characters "
                "(CR, LF, NUL, ESC...; tab is allowed); percent-encode or base64 anything else"
            )
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"http_headers: {name!r} is set by minipub and cannot be replaced")
        out[name] = value
    return out


def build_publish_request(
    *,
    tenant_id: Any,
    topic: Any,
    data: Any,
    eligible_for_retry: Any = True,
    destination_id: Any = None,
    metadata: Any = None,
    id: Any = None,
    time: Any = None,
    http_headers: Optional[Mapping[str, str]] = None,
) -> PublishRequest:
    """Validate the arguments of a publish and encode its body (with an event id, always).

    Anything wrong with them, even an exception raised by the caller's own objects, is a ValidationError.
    """
    try:
        return _build(tenant_id, topic, data, eligible_for_retry, destination_id, metadata, id, time, http_headers)
    except ValidationError:
        raise
    except Exception as exc:  # the last line of defence: a field's own methods raised
        raise ValidationError(f"the publish arguments could not be read: {type(exc).__name__}: "
                              f"{show(exc, 200)}") from exc


def _build(tenant_id: Any, topic: Any, data: Any, eligible_for_retry: Any, destination_id: Any, metadata: Any,
           id: Any, time: Any, http_headers: Any) -> PublishRequest:
    tenant = _text("tenant_id", tenant_id)
    topic_name = _text("topic", topic)
    if type(eligible_for_retry) is not bool:
        raise ValidationError(f"eligible_for_retry must be True or False, got {type(eligible_for_retry).__name__}")
    if type(data) is not dict and not isinstance(data, Mapping):  # the common case without the ABC check
        raise ValidationError(
            f"data must be a mapping (a JSON object), got {type(data).__name__}; Outpost rejects other JSON values"
        )
    event_id = new_event_id() if id is None else _text("id", id, optional=True)
    assert tenant is not None and topic_name is not None and event_id is not None
    if destination_id is None and time is None and metadata is None:  # the common event: one template
        body = encode_event(event_id, tenant, topic_name, eligible_for_retry, data)
        if body is not None:
            return PublishRequest(event_id, body, {} if http_headers is None else check_headers(http_headers),
                                  tenant, topic_name)
    payload: Dict[str, Any] = {"id": event_id, "tenant_id": tenant, "topic": topic_name,
                               "eligible_for_retry": eligible_for_retry}
    destination = _text("destination_id", destination_id, optional=True)
    if destination is not None:
        payload["destination_id"] = destination
    sent_time = _time(time)
    if sent_time is not None:
        payload["time"] = sent_time
    meta = _metadata(metadata)
    if meta is not None:
        payload["metadata"] = meta
    body = encode_envelope(payload, "data", data, root="data", envelope_root="request")
    return PublishRequest(event_id, body, check_headers(http_headers), tenant, topic_name)
