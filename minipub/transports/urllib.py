"""A transport on ``urllib.request``, for applications that already configure openers."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import IO, Any, Dict, Optional

from ..errors import TransportError
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .common import map_os_error

__all__ = ["UrllibTransport"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as responses (a 3XX is an APIError): the key never goes elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibTransport:
    """Sends through an ``OpenerDirector`` (yours, or a default one). No connection reuse."""

    def __init__(
        self,
        *,
        opener: Optional[urllib.request.OpenerDirector] = None,
        ssl_context: Any = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if opener is None:
            if ssl_context is None:
                from .tls import make_ssl_context

                ssl_context = make_ssl_context(ca_file=ca_file, client_cert=client_cert, client_key=client_key)
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context), _NoRedirect())
        self._opener = opener
        self._max_body = max_body

    def _read(self, stream: IO[bytes], status: int, headers: Dict[str, str]) -> HTTPResponse:
        body = stream.read(self._max_body + 1)
        truncated = len(body) > self._max_body
        return HTTPResponse(status, headers, body[: self._max_body], truncated)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        req = urllib.request.Request(request.url, data=request.body, headers=request.headers, method=request.method)
        try:
            with self._opener.open(req, timeout=request.timeout) as response:
                return self._read(response, response.status, dict(response.headers.items()))
        except urllib.error.HTTPError as error:
            try:
                return self._read(error, error.code, dict(error.headers.items()) if error.headers else {})
            except (OSError, http.client.HTTPException) as exc:
                raise map_os_error(exc, connecting=False) from None
            finally:
                error.close()
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, BaseException):
                raise map_os_error(reason, connecting=False) from None
            raise TransportError(f"request failed: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise map_os_error(exc, connecting=False) from None

    def close(self) -> None:
        """Nothing pooled to release."""
