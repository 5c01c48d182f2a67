"""One deployment, one writer: an exclusive ``flock`` per deployment, across processes.

``flock`` rather than POSIX ``fcntl`` locks because an ``flock`` belongs to the open file
description: a second ``open`` of the same file conflicts even inside one process, and the kernel
drops the lock when its holder dies, ``kill -9`` included, so there is never a stale lock to clean.

The lock file holds the holder's pid, action and start time (written once the lock is held) so
that a refused caller can say who is in the way. The errors live here, not in the store, because
the store imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SETTLE_SECONDS = 0.5
"""How long ``acquire`` keeps trying when the lock is taken but its file names no live holder:
the holder has just taken it and not yet written its pid, or a reader is probing it (``is_free``).
A live holder is reported at once."""


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
    """What the lock file says about the process holding it."""

    pid: int
    action: str
    since: str


class DeploymentLock:
    """A held deployment lock; release it with ``release()`` or by leaving a ``with`` block."""

    def __init__(self, name: str, action: str, path: Path, fd: int, since: str):
        self.name = name
        self.action = action
        self.path = path
        self.since = since
        self._fd: int | None = fd
        self._on_release: list[Callable[[DeploymentLock], None]] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def on_release(self, callback: Callable[[DeploymentLock], None]) -> None:
        self._on_release.append(callback)

    def release(self) -> None:
        """Blank the holder details, then drop the lock (closing the fd unlocks). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)
            for callback in self._on_release:
                callback(self)

    def __enter__(self) -> DeploymentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"DeploymentLock({self.name!r}, {self.action!r}, {state})"


def acquire(path: Path, name: str, action: str) -> DeploymentLock:
    """Take the lock at ``path`` without waiting for a live holder; ``DeploymentBusy`` if held.

    After ``flock`` succeeds the path must still name the locked file: a deleted deployment's
    lock file is unlinked while held, and a lock on the unlinked file would exclude no one.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(path)
            alive = holder is not None and pid_alive(holder.pid)
            if alive or time.monotonic() >= deadline:
                if holder is None or not alive:
                    raise DeploymentBusy(name, None, None, None) from None
                raise DeploymentBusy(name, holder.pid, holder.action, holder.since) from None
            time.sleep(0.01)
            continue
        except BaseException:
            os.close(fd)
            raise
        if not _same_file(fd, path):
            os.close(fd)
            continue
        since = datetime.now().astimezone().isoformat(timespec="seconds")
        info = json.dumps({"pid": os.getpid(), "action": action, "since": since}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except BaseException:
            os.close(fd)
            raise
        return DeploymentLock(name, action, path, fd, since)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def read_holder(path: Path) -> Holder | None:
    """The holder details in the lock file; None when absent, blank or half written."""
    try:
        data = json.loads(path.read_bytes())
        return Holder(int(data["pid"]), str(data["action"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_free(path: Path) -> bool:
    """Whether no one holds the lock, probed with a shared lock so that probes never conflict
    with each other and the file is neither created nor written."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


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
