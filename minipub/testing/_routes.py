"""Outpost's router as the embedded server imitates it: its routes, its 404s and gin's trailing-slash
redirects, and the answers (status, body, headers) every part of the server builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._gojson import dumps

__all__ = ["Route", "ROUTES", "Result", "Params", "Body", "json_result", "error_result", "empty_result",
           "text_result", "find_route", "no_route", "JSON_CT", "TEXT_CT"]

Headers = List[Tuple[str, str]]
Result = Tuple[int, bytes, Headers]
Params = Dict[str, str]
Body = Callable[[], bytes]

JSON_CT: Tuple[str, str] = ("Content-Type", "application/json; charset=utf-8")
TEXT_CT: Tuple[str, str] = ("Content-Type", "text/plain; charset=utf-8")
_HTML_CT: Tuple[str, str] = ("Content-Type", "text/html; charset=utf-8")
_NOSNIFF: Tuple[str, str] = ("X-Content-Type-Options", "nosniff")


@dataclass(frozen=True)
class Route:
    """One endpoint: ``auth`` False (open), else who may call it, as Outpost's auth middleware decides."""

    method: str
    pattern: str  # after the base path; root routes: the whole path
    handler: str
    root: bool = False
    auth: bool = True
    admin_only: bool = False
    require_tenant: bool = False


ROUTES: Tuple[Route, ...] = (
    Route("GET", "/healthz", "health", root=True, auth=False),
    Route("GET", "/healthz", "health", auth=False),
    Route("GET", "/topics", "topics"),
    Route("POST", "/publish", "publish", admin_only=True),
    Route("PUT", "/tenants/{tenant}", "upsert_tenant"),
    Route("GET", "/tenants/{tenant}", "get_tenant", require_tenant=True),
    Route("GET", "/tenants/{tenant}/token", "tenant_token", admin_only=True, require_tenant=True),
    Route("GET", "/tenants/{tenant}/destinations", "list_destinations", require_tenant=True),
    Route("POST", "/tenants/{tenant}/destinations", "create_destination", require_tenant=True),
    Route("GET", "/tenants/{tenant}/destinations/{destination}", "get_destination", require_tenant=True),
    Route("PUT", "/tenants/{tenant}/destinations/{destination}/disable", "disable", require_tenant=True),
    Route("PUT", "/tenants/{tenant}/destinations/{destination}/enable", "enable", require_tenant=True),
)


def json_result(status: int, value: Any) -> Result:
    return status, dumps(value), [JSON_CT]


def error_result(status: int, message: str, data: Optional[List[str]] = None) -> Result:
    """Outpost's error body: ``{"status", "message"}`` and, for validation errors, ``data``."""
    payload: Dict[str, Any] = {"status": status, "message": message}
    if data is not None:
        payload["data"] = data
    return json_result(status, payload)


def empty_result(status: int) -> Result:
    return status, b"", []


def text_result(status: int) -> Result:
    """A framing error as Go's server answers it: ``400 Bad Request`` as text."""
    reason = BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
    return status, f"{status} {reason}".encode(), [TEXT_CT]


_NOT_FOUND_JSON = json_result(404, {"message": "not found", "status": 404})  # gin.H: keys in sorted order
_NOT_FOUND_TEXT: Result = (404, b"404 page not found\n", [TEXT_CT, _NOSNIFF])


def _match(pattern: str, path: str) -> Optional[Params]:
    want, got = pattern.split("/"), path.split("/")
    if len(want) != len(got):
        return None
    params: Params = {}
    for w, g in zip(want, got):
        if w.startswith("{"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


def find_route(method: str, path: str, prefix: str) -> Optional[Tuple[Route, Params]]:
    """The route a request takes and its path parameters, or None."""
    for route in ROUTES:
        if route.method != method:
            continue
        if route.root:
            params = _match(route.pattern, path)
        elif path.startswith(prefix + "/"):
            params = _match(route.pattern, path[len(prefix):])
        else:
            params = None
        if params is not None:
            return route, params
    return None


def no_route(method: str, path: str, query: str, prefix: str) -> Result:
    """What the router answers when no route matched: a trailing-slash redirect, or a 404."""
    if len(path) > 1 and path.endswith("/") and find_route(method, path[:-1], prefix) is not None:
        location = path[:-1] + ("?" + query if query else "")  # gin's trailing-slash redirect
        if method == "GET":
            return 301, f'<a href="{location}">Moved Permanently</a>.\n\n'.encode(), [
                _HTML_CT, ("Location", location)]
        return 307, b"", [("Location", location)]
    if path.startswith(("/api/", prefix + "/")):
        return _NOT_FOUND_JSON
    return _NOT_FOUND_TEXT
