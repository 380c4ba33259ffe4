"""Auth providers that read the Outpost admin key from a file or from a command's output.

Both are ``minipub.auth.AuthProvider`` objects: minipub asks ``api_key()`` before every
request and calls ``refresh()`` at most once per publish after a 401. Neither ever puts the
key in a repr, a log line or an exception message. They need no pluggy:
``SDK(auth=SecretFile("/run/secrets/outpost"))`` works with the core alone.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

from minipub.auth import check_key
from minipub.errors import ConfigurationError

__all__ = ["SecretFile", "SecretCommand", "from_env", "FILE_ENV", "COMMAND_ENV", "TTL_ENV", "DEFAULT_TTL"]

FILE_ENV = "OUTPOST_API_KEY_FILE"
COMMAND_ENV = "OUTPOST_API_KEY_COMMAND"
TTL_ENV = "OUTPOST_API_KEY_COMMAND_TTL"
#: How long a command's key is used before the command is run again (seconds).
DEFAULT_TTL = 300.0
#: After a failed run with a key still cached, wait this long (at most) before trying again.
_RETRY_FAILED_RUN = 10.0

_log = logging.getLogger("minipub.secretfile")
_Stamp = Tuple[int, int, int, int]


class SecretFile:
    """The key is the content of ``path`` (surrounding whitespace removed).

    The file is checked (one ``stat``) before every request and read again when its inode,
    size or modification time changed, so a rewritten file, or a Kubernetes secret whose
    symlink was swapped, is used from the next request on. ``refresh()`` (after a 401) reads
    it unconditionally. While the file is briefly missing or empty (a rewrite in progress),
    the previous key is kept; without one, a ``ConfigurationError`` names the path.
    """

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str) or not self.path:
            raise ConfigurationError("SecretFile(path) needs the path of the file holding the key")
        self._lock = threading.Lock()
        self._key: Optional[str] = None
        self._stamp: Optional[_Stamp] = None

    def __repr__(self) -> str:
        return f"SecretFile(path={self.path!r})"

    def _stat(self) -> _Stamp:
        st = os.stat(self.path)
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)

    def _read(self) -> Tuple[str, _Stamp]:
        try:
            stamp = self._stat()
            with open(self.path, encoding="utf-8") as handle:
                key = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(f"cannot read the Outpost key file {self.path!r}: {reason}") from None
        check_key(key, f"the Outpost key file {self.path!r}")
        return key, stamp

    def api_key(self) -> str:
        with self._lock:
            key = self._key
            try:
                if key is None or self._stat() != self._stamp:
                    self._key, self._stamp = self._read()
            except (OSError, ConfigurationError):
                if key is None:
                    raise
                _log.warning("the Outpost key file %r is missing or incomplete; keeping the previous key", self.path)
            assert self._key is not None
            return self._key

    def refresh(self) -> bool:
        with self._lock:
            before = self._key
            self._key, self._stamp = self._read()
            return self._key != before


class SecretCommand:
    """The key is the output of ``command`` (surrounding whitespace removed), run without a shell.

    The key is cached for ``ttl`` seconds, and the command run again after that and on
    ``refresh()`` (after a 401). ``command`` is an argument list or a string split like a
    shell would (``"vault kv get -field=key secret/outpost"``). A command that fails, times
    out (``timeout``) or prints nothing raises ``ConfigurationError``; its output is never
    shown, since it may hold the key. When the TTL ran out but the command now fails, the
    cached key is kept and the command is tried again a little later.
    """

    def __init__(
        self,
        command: Union[str, Sequence[str]],
        *,
        ttl: float = DEFAULT_TTL,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise ConfigurationError("SecretCommand(command) needs a command, e.g. 'cat /run/secrets/outpost'")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
            raise ConfigurationError(f"SecretCommand ttl must be a number of seconds >= 0, got {ttl!r}")
        self.argv = argv
        self.ttl = float(ttl)
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._key: Optional[str] = None
        self._expires = 0.0
        self.runs = 0

    def __repr__(self) -> str:
        return f"SecretCommand({self.argv[0]!r}, ttl={self.ttl})"

    def _run(self) -> str:
        self.runs += 1
        name = self.argv[0]
        try:
            done = subprocess.run(self.argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError:
            raise ConfigurationError(f"the Outpost key command {name!r} was not found") from None
        except subprocess.TimeoutExpired:
            raise ConfigurationError(f"the Outpost key command {name!r} did not finish in {self.timeout} s") from None
        except OSError as exc:
            raise ConfigurationError(f"the Outpost key command {name!r} cannot run: {exc.strerror}") from None
        if done.returncode != 0:
            raise ConfigurationError(f"the Outpost key command {name!r} exited with status {done.returncode} "
                                     "(its output is not shown: run it by hand)")
        key = done.stdout.decode("utf-8", "replace").strip()
        check_key(key, f"the output of the Outpost key command {name!r}")
        self._expires = self._clock() + self.ttl
        return key

    def api_key(self) -> str:
        with self._lock:
            if self._key is None:
                self._key = self._run()
            elif self._clock() >= self._expires:
                try:
                    self._key = self._run()
                except ConfigurationError as error:
                    self._expires = self._clock() + min(self.ttl, _RETRY_FAILED_RUN)
                    _log.warning("%s; keeping the previous key for now", error)
            return self._key

    def refresh(self) -> bool:
        with self._lock:
            before = self._key
            self._key = self._run()
            return self._key != before


def from_env(environ: Optional[Mapping[str, str]] = None) -> Union[SecretFile, SecretCommand, None]:
    """The provider that ``OUTPOST_API_KEY_FILE`` or ``OUTPOST_API_KEY_COMMAND`` configure, else None."""
    env = os.environ if environ is None else environ
    path = env.get(FILE_ENV, "").strip()
    command = env.get(COMMAND_ENV, "").strip()
    if path and command:
        raise ConfigurationError(f"set {FILE_ENV} or {COMMAND_ENV}, not both")
    if path:
        return SecretFile(path)
    if not command:
        return None
    ttl_text = env.get(TTL_ENV, "").strip()
    try:
        ttl = float(ttl_text) if ttl_text else DEFAULT_TTL
    except ValueError:
        raise ConfigurationError(f"{TTL_ENV} must be a number of seconds, got {ttl_text!r}") from None
    if not ttl >= 0:
        raise ConfigurationError(f"{TTL_ENV} must be a number of seconds >= 0, got {ttl_text!r}")
    return SecretCommand(command, ttl=ttl)
