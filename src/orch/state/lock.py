"""One deployment, one writer: an exclusive lock per deployment, across processes.

The lock is a byte of ``state.db`` itself, taken with an open-file-description lock
(``F_OFD_SETLK``): one byte per deployment name, far above the bytes SQLite locks. Locking the
database rather than a lock file means that no file a user might tidy away by hand (a stale
looking ``*.lock``) can let two deploys of one name run at once. Like ``flock``, an OFD lock
belongs to the open file description: a second ``open`` conflicts even inside one process, and
the kernel drops the lock when its holder dies, ``kill -9`` included.

The descriptors are never closed while the process lives: closing *any* descriptor of a file
drops the process's POSIX locks on it, SQLite's own included. A released descriptor goes back
to a pool and serves the next lock.

Where OFD locks do not exist (not Linux), each name gets an ``flock``ed file under ``locks/``.

Who holds a lock (pid, action, start time) is written by the store in its ``holders`` table
once the lock is held, so that a refused caller can say who is in the way. The errors live here,
not in the store, because the store imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SETTLE_SECONDS = 0.5
"""How long a lock keeps being tried when it is taken but no live holder is recorded: the
holder has just taken it and not yet written its pid."""

LOCK_REGION = 1 << 40
"""First byte of the deployments' lock bytes: SQLite locks bytes around 1 GiB only."""

_FLOCK = "hh4xqqi4x"
"""``struct flock`` on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid."""


class StateError(Exception):
    """The state cannot be read or changed; the message is one line meant for the user."""


class DeploymentBusy(StateError):
    """Another process (or another lock object of this one) holds the deployment's lock."""

    def __init__(self, name: str, pid: int | None, action: str | None, since: str | None):
        self.name = name
        self.pid = pid
        self.action = action
        self.since = since
        if pid is None:
            what = "another orch process holds its lock"
        else:
            what = f"'{action}' running since {_clock(since)} (pid {pid})"
        super().__init__(f"deployment '{name}' is busy: {what}; wait for it or stop it")


def _clock(since: str | None) -> str:
    """The time of day for today's starts, date and time otherwise."""
    try:
        moment = datetime.fromisoformat(since or "")
    except ValueError:
        return since or "an unknown time"
    now = datetime.now(moment.tzinfo)
    return moment.strftime("%H:%M:%S" if moment.date() == now.date() else "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Holder:
    """Who holds a deployment's lock, as recorded once it was taken."""

    pid: int
    action: str
    since: str


class DeploymentLock:
    """A held deployment lock; release it with ``release()`` or by leaving a ``with`` block."""

    def __init__(self, name: str, action: str, since: str, release: Callable[[], None]):
        self.name = name
        self.action = action
        self.since = since
        self._release: Callable[[], None] | None = release
        self._on_release: list[Callable[[DeploymentLock], None]] = []

    @property
    def held(self) -> bool:
        return self._release is not None

    def on_release(self, callback: Callable[[DeploymentLock], None]) -> None:
        self._on_release.append(callback)

    def release(self) -> None:
        """Drop the lock. Idempotent."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            release()
        finally:
            for callback in self._on_release:
                callback(self)

    def __enter__(self) -> DeploymentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"DeploymentLock({self.name!r}, {self.action!r}, {state})"


def lock_offset(name: str) -> int:
    """The byte of ``state.db`` that stands for deployment ``name`` (48 bits of its sha256)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return LOCK_REGION + int.from_bytes(digest[:6], "big")


class _Descriptors:
    """Descriptors of files, kept open for the life of the process and reused (see above)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._free: dict[tuple[int, int], list[int]] = {}

    def take(self, path: Path) -> int:
        """A descriptor of ``path`` holding no lock (``OSError`` if it cannot be opened)."""
        with contextlib.suppress(OSError):
            info = os.stat(path)
            with self._mutex:
                free = self._free.get((info.st_dev, info.st_ino))
                if free:
                    return free.pop()
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def give(self, fd: int) -> None:
        info = os.fstat(fd)
        with self._mutex:
            self._free.setdefault((info.st_dev, info.st_ino), []).append(fd)


_descriptors = _Descriptors()


class ByteLocks:
    """The deployments' locks of one state database (Linux: OFD byte-range locks)."""

    def __init__(self, db_path: Path):
        self.db_path = db_path

    def try_lock(self, name: str) -> int | None:
        """The descriptor now holding ``name``'s lock, or None when someone holds it."""
        fd = _descriptors.take(self.db_path)
        try:
            self._fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK, name)
        except (BlockingIOError, PermissionError):
            _descriptors.give(fd)
            return None
        except BaseException:
            _descriptors.give(fd)
            raise
        return fd

    def unlock(self, name: str, fd: int) -> None:
        try:
            self._fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, name)
        finally:
            _descriptors.give(fd)

    def is_locked(self, name: str) -> bool:
        """Whether anyone (this process included, through another lock) holds ``name``."""
        fd = _descriptors.take(self.db_path)
        try:
            answer = self._fcntl(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, name)
        finally:
            _descriptors.give(fd)
        return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK

    @staticmethod
    def _fcntl(fd: int, command: int, kind: int, name: str) -> bytes:
        request = struct.pack(_FLOCK, kind, os.SEEK_SET, lock_offset(name), 1, 0)
        return fcntl.fcntl(fd, command, request)


class FileLocks:
    """The same, where OFD locks do not exist: one ``flock``ed file per name in ``folder``."""

    def __init__(self, folder: Path, file_name: Callable[[str], str]):
        self.folder = folder
        self.file_name = file_name

    def _path(self, name: str) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.folder / f"{self.file_name(name)}.lock"

    def try_lock(self, name: str) -> int | None:
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def unlock(self, name: str, fd: int) -> None:
        os.close(fd)

    def is_locked(self, name: str) -> bool:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def locks_for(
    db_path: Path, folder: Path, file_name: Callable[[str], str]
) -> ByteLocks | FileLocks:
    """Byte locks on the database where the system has OFD locks, lock files otherwise."""
    if hasattr(fcntl, "F_OFD_SETLK"):
        return ByteLocks(db_path)
    return FileLocks(folder, file_name)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie (a killed, unreaped child)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # the state letter follows the command name, which is in parentheses and may hold spaces
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] != "Z"
