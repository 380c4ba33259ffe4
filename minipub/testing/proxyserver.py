"""A recording HTTP proxy for the transport contract: absolute-URI forwarding and ``CONNECT``
tunnels, to 127.0.0.1 only."""

from __future__ import annotations

import select
import socket
import time
from typing import Optional
from urllib.parse import urlsplit

from ._rawserver import IO_TIMEOUT, ContractRequest, Peer, RawServer

__all__ = ["ContractProxy"]

#: The only hosts the proxy will connect to: test traffic stays on this machine.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Hop-by-hop headers, and the framing the proxy sets itself.
_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive", "transfer-encoding",
                  "content-length"})


def _pipe(peer: Peer, upstream: socket.socket) -> None:
    """Relay bytes both ways until either side closes (bounded)."""
    early = peer.take_pending()  # what the client sent after its request, e.g. a TLS hello
    if early:
        upstream.sendall(early)
    pair = {peer.sock: upstream, upstream: peer.sock}
    deadline = time.monotonic() + IO_TIMEOUT
    while not peer.server.stopping.is_set() and time.monotonic() < deadline:
        readable, _, _ = select.select(list(pair), [], [], 0.5)  # close() wakes it
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            pair[sock].sendall(data)


class ContractProxy(RawServer):
    """An HTTP proxy: absolute-URI forwarding and ``CONNECT`` tunnels, to 127.0.0.1 only.

    ``requests`` are what it was asked (``CONNECT host:port`` or ``POST http://...``) with their
    headers, ``Proxy-Authorization`` included. ``refuse_connect`` answers CONNECT with that status.
    """

    def __init__(self, *, refuse_connect: int = 0) -> None:
        super().__init__(self._handle)
        self.refuse_connect = refuse_connect

    def _open(self, peer: Peer, host: str, port: int) -> Optional[socket.socket]:
        if host.strip("[]") not in _LOCAL_HOSTS:
            peer.respond(403, b"the contract proxy only reaches 127.0.0.1", close=True)
            return None
        try:
            upstream = socket.create_connection((host.strip("[]"), port), timeout=IO_TIMEOUT)
        except OSError:
            peer.respond(502, b"upstream refused", close=True)
            return None
        self.track(upstream)
        return upstream

    def _handle(self, peer: Peer) -> None:
        request = peer.read_request()
        if request is None:
            return
        upstream = self._tunnel(peer, request) if request.method == "CONNECT" else self._forward(peer, request)
        if upstream is None:
            return
        try:
            _pipe(peer, upstream)
        finally:
            upstream.close()

    def _tunnel(self, peer: Peer, request: ContractRequest) -> Optional[socket.socket]:
        if self.refuse_connect:
            peer.respond(self.refuse_connect, b"no tunnel for you", close=True)
            return None
        host, _, port = request.target.rpartition(":")
        upstream = self._open(peer, host, int(port))
        if upstream is not None:
            peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream

    def _forward(self, peer: Peer, request: ContractRequest) -> Optional[socket.socket]:
        parts = urlsplit(request.target)
        if parts.scheme != "http" or not parts.hostname:
            peer.respond(400, b"absolute http:// URI expected", close=True)
            return None
        upstream = self._open(peer, parts.hostname, parts.port or 80)
        if upstream is not None:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lines = [f"{request.method} {target} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in _HOP]
            lines += [f"Content-Length: {len(request.body)}", "Connection: close"]
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
        return upstream


