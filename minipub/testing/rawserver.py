"""Servers for transport tests: exact bytes and misbehaviour on demand, a recording proxy, certificates.

:class:`RawServer` serves each accepted connection with a handler (threads, 127.0.0.1, every wait
bounded; ``_rawserver.py``); :class:`ContractProxy` forwards absolute-URI requests and ``CONNECT``
tunnels and records what it saw (``proxyserver.py``); :func:`make_certificates` makes a self-signed
server and client certificate with the ``openssl`` command line (``certificates.py``). This module
gathers them under the one name the suites import.
"""

from ._rawserver import IO_TIMEOUT, ContractRequest, Handler, Peer, RawServer, Reply, outpost_like
from .certificates import Certificates, make_certificates
from .proxyserver import ContractProxy

__all__ = ["RawServer", "Peer", "ContractRequest", "ContractProxy", "Certificates", "make_certificates",
           "outpost_like", "IO_TIMEOUT", "Handler", "Reply"]
