"""The publish fields, declared once.

The TypedDicts (``_fieldtypes.py``, re-exported here) give ``minipub.publish``, ``SDK.publish.event``,
their async forms and ``Publisher.submit`` their keyword arguments for type checkers and IDEs (PEP 692 ``Unpack``);
:data:`FIELDS` holds what runs: each field's default, whether a ``minipub bulk`` line may
carry it, and what it means. :func:`build` checks a call's fields and builds its request.
"""

from __future__ import annotations

from ._record import Record
from .errors import ValidationError
from .request import PublishRequest, build_publish_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple

    from ._fieldtypes import EventCall as EventCall
    from ._fieldtypes import EventFields as EventFields
    from ._fieldtypes import PublishOptions as PublishOptions
    from .retry import RetryConfig

__all__ = ["EventFields", "PublishOptions", "EventCall", "FIELDS", "LINE_FIELDS", "REQUIRED", "REQUIRED_FIELDS",
           "build", "check_retry_config", "timeout_seconds"]


class _Field(Record):
    name: str
    default: Any
    on_a_line: bool
    doc: str


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks a field without a default.
REQUIRED: Any = _Required()

#: Every publish field, in the order the docs list them.
FIELDS: Tuple[_Field, ...] = (
    _Field("tenant_id", REQUIRED, True, "the tenant the event belongs to"),
    _Field("topic", REQUIRED, True, "the event's topic"),
    _Field("data", REQUIRED, True, "the event's JSON object"),
    _Field("eligible_for_retry", True, True, "whether Outpost retries failed deliveries"),
    _Field("destination_id", None, True, "deliver to this destination only"),
    _Field("metadata", None, True, "str to str, forwarded with the event"),
    _Field("id", None, True, "the event id (a UUID4 is generated when left out); the same on every retry"),
    _Field("time", None, True, "an aware datetime or an RFC 3339 str"),
    _Field("retries", None, False, "a RetryConfig for this publish (the Outpost SDK's name); the client's if None"),
    _Field("timeout_ms", None, False, "the per-attempt timeout in milliseconds; the client's if None"),
    _Field("http_headers", None, False, "extra request headers"),
)
_DEFAULTS: Dict[str, Any] = {field.name: field.default for field in FIELDS}
_NAMES = frozenset(_DEFAULTS)
#: The fields a ``minipub bulk`` NDJSON line may carry: the event's own.
LINE_FIELDS = tuple(field.name for field in FIELDS if field.on_a_line)
#: The fields a line or a call must have.
REQUIRED_FIELDS = tuple(field.name for field in FIELDS if field.default is REQUIRED)
_REQUIRED = frozenset(REQUIRED_FIELDS)
#: How this one publish is sent, not part of the request (``http_headers`` is).
_SEND_OPTIONS = frozenset({"retries", "timeout_ms"})


def __getattr__(name: str) -> Any:
    """The TypedDicts load on first access (``_fieldtypes.py``): making them costs a fresh process 0.3 ms."""
    if name in ("EventFields", "PublishOptions", "EventCall"):
        from . import _fieldtypes

        value = getattr(_fieldtypes, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(fields: Mapping[str, Any]) -> Tuple[PublishRequest, Optional[RetryConfig], Optional[float]]:
    """A call's fields checked and its request built: (request, its retry config, its timeout_ms).

    Anything wrong (an unknown or missing field, a bad value) is a ValidationError naming the field.
    The event fields' defaults are ``build_publish_request``'s (tests/test_fields.py keeps them
    equal to :data:`FIELDS`).
    """
    if not _NAMES.issuperset(fields):
        raise ValidationError(_unknown(fields))
    if not _REQUIRED.issubset(fields):
        raise ValidationError(f"{next(name for name in REQUIRED_FIELDS if name not in fields)} is required")
    if _SEND_OPTIONS.isdisjoint(fields):  # the common call
        return build_publish_request(**fields), None, None
    retries = fields.get("retries")
    timeout_ms = fields.get("timeout_ms")
    if retries is not None:
        check_retry_config(retries, "retries")
    if timeout_ms is not None:
        timeout_seconds(timeout_ms, "timeout_ms")
    fields = {name: value for name, value in fields.items() if name not in _SEND_OPTIONS}
    return build_publish_request(**fields), retries, timeout_ms


def check_retry_config(value: Any, field: str) -> None:
    """A publish's retry config: a RetryConfig (None, the client's, is for the caller to allow)."""
    from .retry import RetryConfig

    if type(value) is not RetryConfig and not isinstance(value, RetryConfig):
        raise ValidationError(f"{field} must be a minipub.RetryConfig (or None for the client's)")


def _unknown(fields: Mapping[str, Any]) -> str:
    from difflib import get_close_matches

    names = sorted(str(name) for name in fields.keys() - _DEFAULTS.keys())
    hints = [f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
             for name in names for close in [get_close_matches(name, _DEFAULTS, n=1)]]
    return f"unknown publish argument {', '.join(hints)}; the arguments are {', '.join(_DEFAULTS)}"


def timeout_seconds(timeout_ms: Any, field: str) -> float:
    """A timeout in milliseconds, checked, as seconds."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or not 0 < timeout_ms < 3_600_000:
        from .encoding import show

        raise ValidationError(
            f"{field} must be a number of milliseconds between 0 and 3,600,000, got {show(timeout_ms)}")
    return timeout_ms / 1000
