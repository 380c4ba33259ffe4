"""TLS settings: verification always on, custom CA file, client certificate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import ssl

__all__ = ["make_ssl_context"]


def make_ssl_context(
    *, ca_file: Optional[str] = None, client_cert: Optional[str] = None, client_key: Optional[str] = None
) -> ssl.SSLContext:
    """A verifying client context (``ssl.create_default_context``) with optional CA and client cert."""
    import ssl

    try:
        context = ssl.create_default_context(cafile=ca_file)
        if client_cert:
            context.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"TLS files could not be loaded (ca_file/client_cert/client_key): {exc}") from None
    return context
