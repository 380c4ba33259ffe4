"""Proxy selection from ``HTTP(S)_PROXY`` / ``NO_PROXY``, without importing urllib.request."""

from __future__ import annotations

import os

from .._record import Record
from ..errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping, Optional

__all__ = ["Proxy", "proxy_for", "parse_proxy", "select_proxy"]


class Proxy(Record):
    """Where to connect instead of the origin, and the header that authenticates to it."""

    host: str
    port: int
    authorization: Optional[str]

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as ``(host, port, authorization)``, as it did when it was a NamedTuple."""
        return iter((self.host, self.port, self.authorization))

    def __repr__(self) -> str:
        auth = "***" if self.authorization else None
        return f"Proxy(host={self.host!r}, port={self.port}, authorization={auth!r})"


def _env(environ: Mapping[str, str], name: str) -> str:
    # Lower case first, as curl and urllib do. Under CGI, HTTP_PROXY can come from a request's
    # "Proxy:" header (httpoxy), so it is ignored when REQUEST_METHOD is set, as they do too.
    value = environ.get(name.lower())
    if not value and not (name.upper() == "HTTP_PROXY" and "REQUEST_METHOD" in environ):
        value = environ.get(name.upper())
    return value or ""


def parse_proxy(url: str) -> Proxy:
    """Parse ``http://user:pass@host:port`` (scheme optional) into a :class:`Proxy`."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"proxy URL {parts.scheme}://{parts.hostname or ''} is not an http(s) proxy URL")
    if parts.scheme == "https":
        raise ConfigurationError(
            f"proxy URL https://{parts.hostname}: TLS to the proxy itself is not supported; use an http:// proxy "
            "(HTTPS to Outpost still goes end to end through CONNECT)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"proxy URL {parts.scheme}://{parts.hostname} has an invalid port") from None
    authorization = None
    if parts.username is not None:
        import base64

        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(raw).decode()
    return Proxy(parts.hostname, port or (443 if parts.scheme == "https" else 80), authorization)


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts this host (``*``, exact names, domain suffixes, host:port, [v6]:port)."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("["):  # [v6] or [v6]:port
            name, _, entry_port = entry[1:].partition("]")
            entry_port = entry_port[1:]
        elif entry.count(":") == 1:  # name:port (a bare v6 address has more colons)
            name, _, entry_port = entry.partition(":")
        else:
            name, entry_port = entry, ""
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip("*").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int, environ: Optional[Mapping[str, str]] = None) -> Optional[Proxy]:
    """The proxy the environment names for this origin, or None."""
    env = os.environ if environ is None else environ
    url = _env(env, f"{scheme}_proxy") or _env(env, "all_proxy")
    if not url or bypassed(host, port, _env(env, "no_proxy")):
        return None
    return parse_proxy(url)


def select_proxy(setting: Optional[str], scheme: str, host: str, port: int) -> Optional[Proxy]:
    """The proxy for an origin under a transport's ``proxy`` option: ``"env"``, ``None`` or a URL."""
    if setting == "env":
        return proxy_for(scheme, host, port)
    return parse_proxy(setting) if setting else None
