"""A transport on ``urllib.request``, for applications that already configure openers."""

from __future__ import annotations

import functools
import http.client
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import ConnectError, MinipubError, TransportError
from .base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse
from .common import Deadline, header_block, map_os_error
from .h11parse import framing
from .httpclient import Attempt, BoundedHTTPConnection, BoundedHTTPSConnection, read_capped, reraise_clean
from .proxy import parse_proxy, select_proxy

__all__ = ["UrllibTransport"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as responses (a 3XX is an APIError): the key never goes elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Proxy(urllib.request.ProxyHandler):
    """Proxies chosen by minipub's rules (the same as the http.client transport's), per request."""

    def __init__(self, setting: Optional[str]) -> None:
        super().__init__({})
        self._setting = setting

    def _choose(self, request: urllib.request.Request) -> None:
        parts = urlsplit(request.full_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = select_proxy(self._setting, parts.scheme, parts.hostname or "", port)
        if proxy is not None:
            if proxy.authorization:  # for an https origin urllib moves it onto the CONNECT
                request.add_header("Proxy-Authorization", proxy.authorization)
            host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
            request.set_proxy(f"{host}:{proxy.port}", "http")

    def http_open(self, request: urllib.request.Request) -> None:
        self._choose(request)

    https_open = http_open


class _Request(urllib.request.Request):
    """A request that carries its attempt (deadline, body cap) to minipub's handlers."""

    def __init__(self, attempt: Attempt, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.minipub = attempt


def _attempt(request: urllib.request.Request) -> Attempt:
    attempt = getattr(request, "minipub", None)
    return attempt if isinstance(attempt, Attempt) else Attempt(Deadline(request.timeout or 30.0))


class _HTTPHandler(urllib.request.HTTPHandler):
    """Plain HTTP through minipub's bounded connections (one deadline, minipub's parser)."""

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(BoundedHTTPConnection, _attempt(req)), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS through minipub's bounded connections, with the handler's TLS context."""

    _context: Any

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(BoundedHTTPSConnection, _attempt(req)), req,
                            context=self._context)


def _check_framing(status: int, pairs: List[Tuple[str, str]]) -> None:
    """A response read by another opener's handler still obeys minipub's framing rule (Content-Length)."""
    lowered: Dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        lowered[key] = value if key not in lowered else lowered[key] + ", " + value
    framing(status, False, lowered, False)


class UrllibTransport:
    """Sends through an ``OpenerDirector`` (yours, or a default one). No connection reuse.

    ``proxy``: ``"env"`` (default: ``HTTP(S)_PROXY``/``NO_PROXY``), ``None`` (direct) or a URL.
    With your own ``opener``, its handlers decide TLS and proxies.
    """

    supports_keepalive = False  # urllib sends ``Connection: close``: one connection per request
    supports_proxy = True

    def __init__(
        self,
        *,
        opener: Optional[urllib.request.OpenerDirector] = None,
        ssl_context: Any = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        proxy: Optional[str] = "env",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if opener is None:
            if ssl_context is None:
                from .tls import make_ssl_context

                ssl_context = make_ssl_context(ca_file=ca_file, client_cert=client_cert, client_key=client_key)
            if proxy not in (None, "env"):
                parse_proxy(proxy)  # a bad URL fails here, not on the first send
            opener = urllib.request.build_opener(
                _HTTPHandler(), _HTTPSHandler(context=ssl_context), _NoRedirect(), _Proxy(proxy)
            )
        self._opener = opener
        self._max_body = max_body
        self._closed = False

    def _read(self, stream: Any, status: int, headers: Any) -> HTTPResponse:
        ours = getattr(stream, "minipub", None)
        if isinstance(ours, HTTPResponse):  # read by minipub's parser, under the attempt's deadline
            return ours
        pairs = list(headers.items()) if headers is not None else []  # another opener's handler read it
        _check_framing(status, pairs)
        body, truncated = read_capped(stream, self._max_body)
        return HTTPResponse(status, dict(pairs), body, truncated)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        if self._closed:
            raise ConnectError("transport is closed")
        header_block(request)  # the one header rule (a ValidationError naming the header, never its value)
        attempt = Attempt(Deadline(request.timeout), self._max_body)
        try:  # no local holds the urllib Request: its headers reveal the credentials
            with self._opener.open(_Request(attempt, request.url, data=request.body, headers=request.reveal_headers(),
                                            method=request.method), timeout=request.timeout) as response:
                return self._read(response, response.status, response.headers)
        except urllib.error.HTTPError as error:
            try:
                return self._read(getattr(error, "fp", None) or error, error.code, error.headers)
            except (OSError, http.client.HTTPException) as exc:
                raise map_os_error(exc.with_traceback(None), connecting=False) from None
            finally:
                error.close()
        except urllib.error.URLError as error:  # raised by the handler around connecting and sending
            reason = error.with_traceback(None).reason
            if isinstance(reason, BaseException):  # frames dropped: http.client's hold the request head
                raise map_os_error(reason.with_traceback(None), connecting=not attempt.connected,
                                   target=attempt.target) from None
            raise TransportError(f"request failed: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise map_os_error(exc.with_traceback(None), connecting=False) from None
        except MinipubError as exc:
            raise reraise_clean(exc) from None

    def close(self) -> None:
        """Nothing pooled to release; later sends fail."""
        self._closed = True
