"""Certificates for the TLS tests: a self-signed server and client certificate, made with the
``openssl`` command line."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

__all__ = ["Certificates", "make_certificates"]


@dataclass(frozen=True)
class Certificates:
    """A self-signed server certificate (127.0.0.1, localhost) and a self-signed client one."""

    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_name: str = "minipub-contract-client"

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_cert)
        return context

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A verifying client context that trusts the server certificate."""
        context = ssl.create_default_context(cafile=self.server_cert)
        if with_client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Make the certificates with the ``openssl`` command line (RSA 2048, valid 2 days)."""
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    files: Dict[str, str] = {}
    for role, name, san in (
        ("server", "localhost", "IP:127.0.0.1,DNS:localhost"),
        ("client", "minipub-contract-client", "DNS:minipub-contract-client"),
    ):
        cert, key = str(directory / f"{role}.pem"), str(directory / f"{role}.key")
        command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                   "-addext", f"subjectAltName={san}", "-days", "2", "-keyout", key, "-out", cert]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"the TLS tests make certificates with the openssl command line: {exc}") from exc
        files[f"{role}_cert"], files[f"{role}_key"] = cert, key
    return Certificates(**files)
