"""Reads of the Outpost API beside publishing (``GET /healthz``, ``GET /topics``), sent as a client sends.

Built on the client's public parts only: its transport (``SDK.transport``), its key provider
(``SDK.auth``), base URL and per-attempt timeout. The key travels as a Secret and is redacted from
any error; a status that is not accepted raises the same ``APIError`` as a publish would, with its
hint. No retries: a read is a check (``minipub ping``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Dict, Optional, Tuple, Union

from .auth import provided_key
from .client import USER_AGENT
from .errors import ConfigurationError
from .response import error_from_response
from .secret import Secret
from .transports.base import HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    from .client import SDK

__all__ = ["get", "credentials", "Credentials"]

#: The key and ``"Bearer <key>"``, as Secrets.
Credentials = Tuple[Secret, Secret]


def get(sdk: SDK, path: str, *, authenticated: bool = True, key: Optional[Credentials] = None,
        accept: Collection[int] = (200,)) -> HTTPResponse:
    """``GET {sdk.server_url}{path}`` through the client's transport, with its key when ``authenticated``
    (``key``, else read from the client's provider now; redacted from an error in both cases).

    A status not in ``accept`` raises the status table's ``APIError``; network failures are the
    transport's ``TransportError``; a client without a key raises ``ConfigurationError``.
    """
    headers: Dict[str, Union[str, Secret]] = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if authenticated:
        key = key or credentials(sdk)
        headers["Authorization"] = key[1]
    response = sdk.transport.send(HTTPRequest("GET", sdk.server_url + path, headers, b"", sdk.timeout_ms / 1000))
    if response.status in accept:
        return response
    error = error_from_response(response, None if key is None else key[0])
    del response  # the raw body may echo the key: no frame local keeps it in a traceback
    raise error


def credentials(sdk: SDK) -> Credentials:
    """The client's key, read now from its provider (``SDK.auth``) and checked, as Secrets: no local holds it."""
    auth = sdk.auth
    if auth is None:
        raise ConfigurationError("no Outpost API key: this read needs the admin API key")
    return provided_key(auth)
