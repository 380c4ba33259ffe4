"""Classify an HTTP response: a 2XX becomes a PublishResponse, anything else the table's error."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from .errors import APIError, ProtocolError, error_class_for
from .models import PublishResponse
from .transports.base import HTTPResponse

__all__ = ["parse_publish_response", "error_from_response", "MAX_ERROR_TEXT"]

_decode = json.JSONDecoder().decode

#: How much of an error body is kept as text on the exception.
MAX_ERROR_TEXT = 8192


def _redact(text: str, secret: Optional[str]) -> str:
    return text.replace(secret, "***") if secret and secret in text else text


def _json_body(response: HTTPResponse) -> Any:
    body = response.body
    if not body or response.truncated:
        return None
    looks_json = "json" in response.headers.get("content-type", "") or body.lstrip()[:1] in (b"{", b"[")
    if not looks_json:
        return None
    try:
        if body[:1] == b"{" and body[1:2] not in (b"", b"\x00"):  # UTF-8 (what json.loads would detect)
            return _decode(body.decode("utf-8", "surrogatepass"))
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _message(status: int, data: Any, content_type: str) -> str:
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message:
            details = data.get("data")
            if isinstance(details, list) and details and all(isinstance(d, str) for d in details):
                return f"{message}: {'; '.join(details)}"[:1000]
            return message[:1000]
    kind = content_type.split(";")[0].strip() or "no content type"
    return f"the server answered HTTP {status} ({kind})"


def error_from_response(response: HTTPResponse, secret: Optional[str] = None) -> APIError:
    """The table's exception for a non-2XX response; the key is redacted from everything kept."""
    data = _json_body(response)
    text = _redact(response.body[:MAX_ERROR_TEXT].decode("utf-8", "replace"), secret)
    message = _redact(_message(response.status, data, response.headers.get("content-type", "")), secret)
    headers: Dict[str, str] = {k: _redact(v, secret) for k, v in response.headers.items()}
    if secret and data is not None and secret in json.dumps(data):
        data = json.loads(_redact(json.dumps(data), secret))
    cls = error_class_for(response.status)
    return cls(message, status_code=response.status, headers=headers, body=text, data=data)


def parse_publish_response(response: HTTPResponse, event_id: str, secret: Optional[str] = None) -> PublishResponse:
    """A 2XX as PublishResponse (fields the server left out fall back to the sent id); else raise."""
    if not 200 <= response.status < 300:
        raise error_from_response(response, secret)
    data = _json_body(response)
    if not isinstance(data, dict):
        data = {}
    answered_id = data.get("id")
    if isinstance(answered_id, str) and answered_id and answered_id != event_id:
        # Not this request's answer (a late or unsolicited one): an error, never a success for the wrong event.
        shown = _redact(answered_id, secret)[:64]
        raise ProtocolError(f"the server answered for event {shown!r}, not for {event_id!r} (not retried)")
    duplicate = data.get("duplicate")
    destinations = data.get("destination_ids")
    if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
        destinations = []
    return PublishResponse(
        id=answered_id if isinstance(answered_id, str) and answered_id else event_id,
        duplicate=duplicate if isinstance(duplicate, bool) else False,
        destination_ids=destinations,
    )
