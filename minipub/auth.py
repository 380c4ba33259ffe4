"""Credentials: where the admin API key comes from, and how it stays out of sight."""

from __future__ import annotations

import os

from .errors import ConfigurationError
from .secret import Secret

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Optional, Protocol, Tuple, TypeVar, runtime_checkable

    _T = TypeVar("_T")
else:
    from ._runtime_typing import Protocol, runtime_checkable

__all__ = ["AuthProvider", "StaticKey", "resolve_auth", "check_key", "key_problem", "provided_key", "from_provider",
           "API_KEY_ENV"]

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
    """A fixed key. Its repr and str never show it; it is held as a :class:`~minipub.secret.Secret`."""

    __slots__ = ("_bearer", "_secret")

    def __init__(self, key: str, source: str = "admin_api_key") -> None:
        problem = key_problem(key)
        if problem is None:
            self._secret = Secret(key)
            self._bearer = Secret("Bearer " + key)
        del key  # a traceback of the error below must not hold the key in this frame's locals
        if problem is not None:
            raise ConfigurationError(f"{source} {problem}")

    def api_key(self) -> str:
        return self._secret.reveal()

    def secrets(self) -> Tuple[Secret, Secret]:
        """(the key, ``"Bearer <key>"``) as Secrets: what the client sends, never as a str."""
        return self._secret, self._bearer

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Tuple[Any, ...]:
        raise TypeError("a StaticKey is not pickled: it would have to write the key out")


#: Characters an HTTP header cannot carry, or that no key has: controls (C0, DEL, C1) and whitespace.
_KEY_CHARS = frozenset("".join(map(chr, range(0x21, 0x7F))) + "".join(map(chr, range(0xA1, 0x100))))


def key_problem(key: object) -> Optional[str]:
    """What is wrong with a key ("must be ...", never showing it), or None. Never raises."""
    if not isinstance(key, str) or not key.strip():
        return "must be a non-empty str (the Outpost admin API key)"
    if not _KEY_CHARS.issuperset(key):
        return ("contains whitespace, control characters or characters an HTTP header cannot carry "
                "(only printable latin-1 text can be sent); check how it was loaded")
    return None


def check_key(key: object, source: str) -> None:
    """A key must be a non-empty str of printable latin-1 characters (no whitespace or controls)."""
    problem = key_problem(key)
    del key  # not in this frame's locals when the error's traceback is printed
    if problem is not None:
        raise ConfigurationError(f"{source} {problem}")


def resolve_auth(
    admin_api_key: Optional[str], provider: Optional[AuthProvider] = None, environ: Optional[Mapping[str, str]] = None
) -> AuthProvider:
    """Precedence: an explicit key, then a configured provider, then ``OUTPOST_API_KEY``."""
    try:
        if admin_api_key is not None:
            return StaticKey(admin_api_key)
        if provider is not None:
            return provider
        env = os.environ if environ is None else environ
        if not env.get(API_KEY_ENV):
            raise ConfigurationError(
                f"no Outpost API key: set the {API_KEY_ENV} environment variable, pass admin_api_key=... "
                "(--api-key on the command line), or configure an auth plugin "
                "(minipub-secretfile: OUTPOST_API_KEY_FILE)"
            )
        return StaticKey(env[API_KEY_ENV], API_KEY_ENV)
    finally:
        admin_api_key = None  # a traceback through this frame shows no key


def provided_key(auth: AuthProvider) -> Tuple[Secret, Secret]:
    """A provider's current key, checked, as Secrets (the key, ``"Bearer <key>"``); whatever goes
    wrong is a ConfigurationError. No local of this frame holds the key when it raises."""
    if isinstance(auth, StaticKey):
        return auth.secrets()
    key = from_provider(auth.api_key, "api_key()")
    problem = key_problem(key)
    if problem is None:
        return Secret(key), Secret("Bearer " + key)
    del key  # not in this frame's locals in the error's traceback
    raise ConfigurationError(f"the key from the auth provider ({type(auth).__name__}.api_key()) {problem}")


def from_provider(call: Callable[[], _T], what: str) -> _T:
    """A call into an auth provider: its own failure (not minipub's) is a ConfigurationError naming the call."""
    from .errors import MinipubError

    try:
        return call()
    except MinipubError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"the auth provider's {what} raised {type(exc).__name__}") from exc
