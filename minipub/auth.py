"""Credentials: where the admin API key comes from, and how it stays out of sight."""

from __future__ import annotations

import os
from typing import Mapping, Optional, Protocol, runtime_checkable

from .errors import ConfigurationError

__all__ = ["AuthProvider", "StaticKey", "resolve_auth", "API_KEY_ENV"]

API_KEY_ENV = "OUTPOST_API_KEY"


@runtime_checkable
class AuthProvider(Protocol):
    """Asked for the key on every attempt, so a rotating key is picked up."""

    def api_key(self) -> str:
        """The admin API key to send now."""
        ...

    def refresh(self) -> bool:
        """Called once per publish after a 401: reload the key; True if it may have changed."""
        ...


class StaticKey:
    """A fixed key. Its repr and str never show it."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        check_key(key, "admin_api_key")
        self._key = key

    def api_key(self) -> str:
        return self._key

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticKey(<redacted>)"

    __str__ = __repr__


def check_key(key: object, source: str) -> None:
    """A key must be a non-empty str without whitespace or control characters."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(f"{source} must be a non-empty str (the Outpost admin API key)")
    if any(c.isspace() or ord(c) < 32 for c in key):
        raise ConfigurationError(f"{source} contains whitespace or control characters; check how it was loaded")


def resolve_auth(
    admin_api_key: Optional[str], provider: Optional[AuthProvider] = None, environ: Optional[Mapping[str, str]] = None
) -> AuthProvider:
    """Precedence: an explicit key, then a configured provider, then ``OUTPOST_API_KEY``."""
    if admin_api_key is not None:
        return StaticKey(admin_api_key)
    if provider is not None:
        return provider
    env = os.environ if environ is None else environ
    key = env.get(API_KEY_ENV)
    if not key:
        raise ConfigurationError(
            f"no Outpost API key: set the {API_KEY_ENV} environment variable, pass admin_api_key=... "
            "(--api-key on the command line), or configure an auth plugin (minipub-secretfile: OUTPOST_API_KEY_FILE)"
        )
    check_key(key, API_KEY_ENV)
    return StaticKey(key)
