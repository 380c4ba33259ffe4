"""``minipub ping``: is the configured Outpost reachable, healthy, and does it accept the key?

Publishes nothing: DNS, TCP and TLS by hand (with their latency), then the public
``GET /healthz`` and an authenticated read, ``GET /topics``.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import APIError, ConnectError, MinipubError
from ..reads import Credentials, credentials, get
from ..transports.base import HTTPResponse
from .common import EXIT_OK, add_connection_flags, make_sdk, printable

if TYPE_CHECKING:
    from .. import SDK

NAME = "ping"
SUMMARY = ("Check the base URL (DNS, TCP, TLS, GET /healthz) and that the key is accepted (GET /topics); "
           "publishes nothing.")
EXAMPLE = """\
  OUTPOST_API_KEY=... OUTPOST_API_BASE_URL=http://localhost:3333/api/v1 minipub ping
  minipub ping --base-url https://api.outpost.hookdeck.com/2025-07-01 --timeout 3"""

_Sockaddr = Tuple[Any, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)


def _step(name: str, check: Callable[[], str]) -> None:
    """Run one check and print its line (with its latency); a failure is printed, then raised."""
    started = time.perf_counter()
    try:
        detail = check()
    except MinipubError as error:
        print(f"  {name:<7} FAIL  {printable(str(error))}", flush=True)
        raise
    print(f"  {name:<7} ok    {printable(detail)} ({(time.perf_counter() - started) * 1000:.1f} ms)", flush=True)


def _resolve(host: str, port: int) -> List[_Sockaddr]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectError(f"DNS lookup of {host!r} failed: {exc.strerror or exc}") from None
    return [info[4] for info in infos]


def _connect(addresses: List[_Sockaddr], timeout: float) -> socket.socket:
    from ..transports.common import map_os_error

    error: Optional[BaseException] = None
    for address in addresses:
        family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise map_os_error(error, connecting=True) from None


def _handshake(sock: socket.socket, host: str) -> str:
    from ..transports.common import map_os_error
    from ..transports.tls import make_ssl_context

    try:
        with make_ssl_context().wrap_socket(sock, server_hostname=host) as tls:
            return f"{tls.version()}, certificate verified for {host}"
    except OSError as exc:
        raise map_os_error(exc, connecting=True) from None


def _json(response: HTTPResponse) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        return None


def run(args: argparse.Namespace) -> int:
    with make_sdk(args) as sdk:  # the key, base URL and transport exactly as a publish resolves them
        return _checks(sdk, credentials(sdk), args.timeout)


def _checks(sdk: SDK, key: Credentials, timeout: float) -> int:
    from ..transports.proxy import proxy_for

    url = sdk.server_url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = proxy_for(parts.scheme, host, port)
    target = (proxy.host, proxy.port) if proxy else (host, port)
    via = f" (through the proxy {proxy.host}:{proxy.port})" if proxy else ""
    print(f"minipub ping {printable(url)}{via}", flush=True)
    addresses: List[_Sockaddr] = []
    sockets: List[socket.socket] = []

    def dns() -> str:
        addresses.extend(_resolve(*target))
        return f"{target[0]} is {', '.join(sorted({str(a[0]) for a in addresses}))}"

    def tcp() -> str:
        sockets.append(_connect(addresses, timeout))
        peer = sockets[0].getpeername()
        return f"connected to {peer[0]} port {peer[1]}"

    def tls() -> str:
        return _handshake(sockets[0], host)

    def healthz() -> str:
        response = get(sdk, "/healthz", authenticated=False, key=key, accept=(200, 404))
        if response.status == 404:
            return "GET /healthz: not served (managed Outpost has none), skipped"
        body = _json(response)
        status = body.get("status") if isinstance(body, dict) else None
        return f"GET /healthz: HTTP 200, {status or 'no status'}"

    def authenticated() -> str:
        topics = _json(get(sdk, "/topics", key=key))  # another status raises, its message naming the fix
        if topics is None:  # Outpost without TOPICS answers null: every topic is accepted
            return "GET /topics: key accepted, no topics configured (any topic is accepted)"
        if not isinstance(topics, list):
            raise APIError(f"GET {url}/topics answered 200 but not a JSON list: is this an Outpost API?",
                           status_code=200)
        return f"GET /topics: key accepted, {len(topics)} topic(s) configured"

    try:
        _step("dns", dns)
        _step("tcp", tcp)
        if parts.scheme == "https" and not proxy:
            _step("tls", tls)
        else:
            print(f"  {'tls':<7} -     {'tunnelled through the proxy' if proxy else 'plain http, no TLS'}")
        _step("health", healthz)
        _step("auth", authenticated)
    finally:
        for sock in sockets:
            sock.close()
    print("ok: reachable and the key is accepted")
    return EXIT_OK
