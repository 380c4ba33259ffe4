"""minipub-secretfile: the Outpost admin key from a file (rotating secrets) or a command.

Installed, it is found through the ``minipub`` entry point and configured by the environment
(``OUTPOST_API_KEY_FILE`` or ``OUTPOST_API_KEY_COMMAND``); or use the providers directly:
``SDK(auth=SecretFile("/run/secrets/outpost"))``. Importing this package needs no pluggy.
"""

from .providers import COMMAND_ENV, DEFAULT_TTL, FILE_ENV, TTL_ENV, SecretCommand, SecretFile, from_env

__all__ = ["SecretFile", "SecretCommand", "from_env", "FILE_ENV", "COMMAND_ENV", "TTL_ENV", "DEFAULT_TTL"]
__version__ = "0.1.0"
