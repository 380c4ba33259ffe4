"""Classify an HTTP response: a 2XX becomes a PublishResponse, anything else the table's error."""

from __future__ import annotations

import json

from .errors import APIError, ProtocolError, error_class_for
from .models import PublishResponse
from .secret import redact, redact_data
from .transports.base import HTTPResponse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Tuple

    from .secret import SecretLike

__all__ = ["parse_publish_response", "error_from_response", "MAX_ERROR_TEXT", "QUEUED_HEADER"]

_decoder = json.JSONDecoder()
_decode = _decoder.decode
#: One JSON value from an index: (value, end). ``decode`` without its two whitespace matches.
_scan: Callable[[str, int], Tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_STR = frozenset({str})

#: How much of an error body is kept as text on the exception (characters).
MAX_ERROR_TEXT = 8192
#: How much of the server's message is kept in the exception's message (characters).
MAX_MESSAGE = 1000
#: Set by a transport that queued the event for Outpost (its value names the queue system) instead of
#: receiving Outpost's own answer: the response then says nothing of duplicates or destinations.
QUEUED_HEADER = "x-minipub-queued"


def _json_body(response: HTTPResponse) -> Any:
    body = response.body
    if not body or response.truncated:
        return None
    try:
        # An object first (it looks like JSON whatever the content type), in UTF-8 (what json.loads would detect)
        if body[:1] == b"{" and body[1:2] not in (b"", b"\x00"):
            text = body.decode("utf-8", "surrogatepass")
            value, end = _scan(text, 0)
            return value if end == len(text) else _decode(text)  # else trailing blanks or extra data
        if "json" in response.headers.get("content-type", "") or body.lstrip()[:1] in (b"{", b"["):
            return json.loads(body)
    except (ValueError, RecursionError, StopIteration):
        pass
    return None


def _message(status: int, data: Any, content_type: str) -> str:
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message:
            details = data.get("data")
            if isinstance(details, list) and details and all(isinstance(d, str) for d in details):
                return f"{message}: {'; '.join(details)}"
            return message
    kind = content_type.split(";")[0].strip() or "no content type"
    return f"the server answered HTTP {status} ({kind})"


def error_from_response(response: HTTPResponse, secret: SecretLike = None) -> APIError:
    """The table's exception for a non-2XX response; the key is redacted from everything kept.

    Redaction runs on the whole text, then the text is cut (see :func:`minipub.secret.redact`).
    """
    data = _json_body(response)
    window = response.body[: 4 * MAX_ERROR_TEXT + 65536]  # the kept characters, and an echo reaching past them
    text = redact(window.decode("utf-8", "replace"), secret, MAX_ERROR_TEXT,
                  cut=response.truncated or len(window) < len(response.body))
    message = redact(_message(response.status, data, response.headers.get("content-type", "")), secret, MAX_MESSAGE)
    headers: Dict[str, str] = {redact(k, secret): redact(v, secret) for k, v in response.headers.items()}
    data = redact_data(data, secret)
    cls = error_class_for(response.status)
    return cls(message, status_code=response.status, headers=headers, body=text, data=data)


def parse_publish_response(response: HTTPResponse, event_id: str, secret: SecretLike = None) -> PublishResponse:
    """A 2XX as PublishResponse (fields the server left out fall back to the sent id); else raise."""
    if not 200 <= response.status < 300:
        error = error_from_response(response, secret)
        del response  # the raw body may echo the key: no frame local keeps it in a traceback
        raise error
    data = _json_body(response)
    if type(data) is not dict:
        data = {}
    if QUEUED_HEADER in response.headers:
        queued_id = data.get("id")
        return PublishResponse(queued_id if isinstance(queued_id, str) and queued_id else event_id, None, None)
    answered_id = data.get("id")
    if type(answered_id) is not str or not answered_id:
        answered_id = event_id
    elif answered_id != event_id:
        # Not this request's answer (a late or unsolicited one): an error, never a success for the wrong event.
        shown = redact(answered_id, secret, 64)
        raise ProtocolError(f"the server answered for event {shown!r}, not for {event_id!r} (not retried)")
    duplicate = data.get("duplicate")
    destinations = data.get("destination_ids")
    if type(destinations) is not list or not _STR.issuperset(map(type, destinations)):  # JSON: exact types
        destinations = ()
    return PublishResponse(answered_id, duplicate if type(duplicate) is bool else False, tuple(destinations))
