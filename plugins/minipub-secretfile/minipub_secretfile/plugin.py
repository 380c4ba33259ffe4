"""The ``secretfile`` entry point: supplies the key provider when the environment configures one.

``OUTPOST_API_KEY_FILE=/run/secrets/outpost`` or ``OUTPOST_API_KEY_COMMAND="vault kv get
-field=key secret/outpost"`` (with ``OUTPOST_API_KEY_COMMAND_TTL``, seconds, default 300).
Configured by arguments instead: ``SDK(plugins=[SecretFilePlugin(path=...)])``, or simply
``SDK(auth=SecretFile(...))``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from minipub.errors import ConfigurationError
from minipub.hookspecs import hookimpl

from .providers import DEFAULT_TTL, SecretCommand, SecretFile, from_env

__all__ = ["minipub_auth", "SecretFilePlugin"]


@hookimpl
def minipub_auth() -> Union[SecretFile, SecretCommand, None]:
    """The provider the environment configures, or None (then ``OUTPOST_API_KEY`` applies)."""
    return from_env()


class SecretFilePlugin:
    """The plugin configured by arguments: a file ``path``, or a ``command`` (with ``ttl``)."""

    #: Replaces the entry point's plugin when passed to ``SDK(plugins=...)``.
    minipub_plugin_name = "secretfile"

    def __init__(
        self,
        path: Optional[str] = None,
        *,
        command: Union[str, Sequence[str], None] = None,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        if (path is None) == (command is None):
            raise ConfigurationError("SecretFilePlugin needs either path= or command=")
        self.provider: Union[SecretFile, SecretCommand] = (
            SecretFile(path) if path is not None else SecretCommand(command or "", ttl=ttl)
        )

    def __repr__(self) -> str:
        return f"SecretFilePlugin({self.provider!r})"

    @hookimpl
    def minipub_auth(self) -> Union[SecretFile, SecretCommand]:
        return self.provider
