"""Which outbox owners are alive: each holds an exclusive ``flock`` on its own file beside the outbox.

The file is ``OUTBOX.owner-NAME.lock``. The kernel releases the lock when the process dies
(``SIGKILL`` included), so a lock file nobody holds belongs to a dead owner. ``flock`` locks
belong to an open file, not to a process, so two owners in one process see each other alive.
Without ``fcntl`` (Windows), or when the file cannot be made, nothing is known and leases alone
decide. Local disks only (as SQLite's WAL is).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: liveness unknown, leases decide
    fcntl = None  # type: ignore[assignment]

#: Owner names that map to a file name as they are (the publisher's are ``PID-HEX``).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def prefix_for(db_path: str) -> str:
    """How the owners' lock files of this outbox begin: ``PATH.owner-OWNER.lock``, beside it."""
    return db_path + ".owner-"


def _path(prefix: str, owner: Any) -> Optional[str]:
    if fcntl is None or not isinstance(owner, str) or not _NAME.fullmatch(owner):
        return None
    return prefix + owner + ".lock"


class OwnerLock:
    """One owner's lock, held from :meth:`hold` until :meth:`release` or the death of the process."""

    def __init__(self, prefix: str, owner: str) -> None:
        self.owner = owner
        self._path = _path(prefix, owner)
        self._fd: Optional[int] = None

    def hold(self) -> bool:
        """Take the lock (a fresh file, locked before it gets its name); False when liveness cannot be shown."""
        if self._fd is not None:
            return True
        if self._path is None:
            return False
        temp = self._path + ".new"
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(temp, self._path)  # probers only ever see a locked file under the owner's name
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up and remove the file (this owner holds no row any more)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
        os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor (the parent's lock stays the parent's)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def is_dead(prefix: str, owner: Any) -> bool:
    """True only when ``owner``'s lock file exists and no process holds its lock."""
    path = _path(prefix, owner)
    if path is None:
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no file: an owner that never showed liveness (older version, no fcntl): unknown
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: alive
    finally:
        os.close(fd)
    return True


def dead_files(prefix: str) -> List[str]:
    """The owners whose lock files beside this outbox nobody holds (their processes died)."""
    if fcntl is None:
        return []
    folder, start = os.path.split(prefix)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    owners = [name[len(start):-len(".lock")] for name in names if name.startswith(start) and name.endswith(".lock")]
    return [owner for owner in owners if is_dead(prefix, owner)]


def forget(prefix: str, owner: Any) -> None:
    """Remove a dead owner's lock file (its rows were released)."""
    path = _path(prefix, owner)
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


class Owners:
    """The liveness locks of the owners claiming through one outbox object, in this process.

    ``holding()`` answers which owners hold rows of the outbox now (its callers read the file)."""

    def __init__(self, db_path: str, holding: Callable[[], Set[str]]) -> None:
        self.prefix = prefix_for(db_path)
        self._holding = holding
        self._locks: Dict[str, OwnerLock] = {}

    def hold(self, owner: str) -> None:
        """``owner`` shows it is alive; the first time, the files of dead owners that hold no row
        (killed while idle) are removed."""
        if owner in self._locks:
            return
        lock = OwnerLock(self.prefix, owner)
        lock.hold()  # False (no fcntl, a read-only directory): others fall back to its leases
        self._locks[owner] = lock
        dead = dead_files(self.prefix)
        if dead:
            holding = self._holding()
            for gone in dead:
                if gone not in holding:
                    forget(self.prefix, gone)

    def dead(self, owners: Iterable[str]) -> List[str]:
        """Which of these owners (none of this object's) died."""
        return [owner for owner in owners if owner not in self._locks and is_dead(self.prefix, owner)]

    def release_idle(self) -> None:
        """Give up the locks of owners that hold no row any more (a send in flight keeps its lock)."""
        if not self._locks:
            return
        try:
            holding = self._holding()
        except Exception:  # the file cannot be read: keep every lock (the process's exit releases them)
            return
        for owner in [owner for owner in self._locks if owner not in holding]:
            self._locks.pop(owner).release()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's owners stay alive only while the parent is."""
        for lock in self._locks.values():
            lock.forget_after_fork()
        self._locks = {}
