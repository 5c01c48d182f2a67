"""The state database's plumbing: opening (schema upgrades, pragmas), one write transaction at
a time, reads, the WAL watch, private folders, and the deployments' locks."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from orch.state import health
from orch.state import lock as locking
from orch.state.lock import DeploymentBusy, DeploymentLock, StateError
from orch.state.rows import check_name, folder_name
from orch.state.schema import _MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another process's transaction before giving up."""


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) through a temporary file renamed over it: whole or absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700; an existing folder is left as it is."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # whatever the umask
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is not a folder", str(path))
    return path


_D = TypeVar("_D", bound="Database")


class Database:
    """One state dir's database and folders. ``Store`` adds the records; open with
    ``Store.open``."""

    def __init__(self, root: Path, conn: sqlite3.Connection):
        self.root = root
        self.db_path = root / "state.db"
        self._conn = conn
        # guards the connection should it be handed between threads; one writer thread is the rule
        self._mutex = threading.RLock()
        self._held: dict[str, DeploymentLock] = {}
        self._my_runs: set[int] = set()
        self._locks = locking.locks_for(self.db_path, root / "locks", folder_name)
        self._wal = health.WalWatch(self.db_path)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls: type[_D], state_dir: str | Path, *, create: bool = True) -> _D:
        """Open (and with ``create``, make) the state in ``state_dir``; upgrade an older schema,
        refuse a newer one. Every failure is a ``StateError`` saying which path and why."""
        root = Path(state_dir)
        db = root / "state.db"
        try:
            exists = db.exists()
            if exists and not db.is_file():
                raise StateError(f"cannot use {db}: it is not a file")
            if not exists:
                if not create:
                    raise StateError(f"no orch state in {root} (no state.db)")
                _private_dir(root)
                # created here so it is 0600 from the start; SQLite gives -wal and -shm the same
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            if not os.access(db, os.R_OK | os.W_OK):
                raise StateError(f"cannot use {db}: permission denied (it must be readable and "
                                 "writable by this user)")  # fmt: skip
        except OSError as e:
            raise StateError(f"cannot use the state folder {root}: {e.strerror or e}") from e
        try:
            conn = sqlite3.connect(
                db, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StateError(f"cannot open {db}: {e}") from e
        store = cls(root, conn)
        try:
            store._set_up()
        except sqlite3.Error as e:
            conn.close()
            raise StateError(f"cannot use {db}: {e}{health.damage_hint(e)}") from e
        except OSError as e:
            conn.close()
            raise StateError(f"cannot use the state folder {root}: {e.strerror or e}") from e
        except BaseException:
            conn.close()
            raise
        return store

    def _set_up(self) -> None:
        """Pragmas and schema. Processes opening a fresh state dir together can get "database
        is locked" here without SQLite's busy handler being called (switching to WAL, a read
        lock upgraded to write): such a clash is retried until BUSY_TIMEOUT."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        delay = 0.01
        while True:
            try:
                with self._mutex:
                    self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                    self._conn.execute("PRAGMA journal_mode = WAL")
                    self._conn.execute("PRAGMA synchronous = NORMAL")
                    self._conn.execute("PRAGMA foreign_keys = ON")
                    self._migrate()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        with self._tx() as c:
            version = self._version()  # again under the write lock: another process may have
            if version > SCHEMA_VERSION:  # upgraded it meanwhile
                raise StateError(
                    f"{self.db_path} was written by a newer orch (state schema {version}, this "
                    f"orch knows up to {SCHEMA_VERSION}); upgrade orch or use another state dir"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    c.execute(statement)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Release the locks this store holds, then close the database. Idempotent."""
        for held in list(self._held.values()):
            held.release()
        with self._mutex:
            self._conn.close()

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on leaving, rolled back on any exception."""
        with self._mutex:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StateError(f"cannot write {self.db_path}: {e}") from e
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StateError(
                        f"cannot write {self.db_path}: {e}{health.damage_hint(e)}"
                    ) from e
                raise
            if self._wal.lost():
                self._save_lost_wal()

    def _save_lost_wal(self) -> None:
        """The WAL was deleted under us: checkpoint it while we still hold it open, then start
        a new connection (and with it a new WAL file)."""
        try:
            self._wal.rescue(self._conn)
            self._conn.close()
            self._conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._set_up()
        except sqlite3.Error as e:
            raise StateError(f"cannot write {self.db_path}: {e}{health.damage_hint(e)}") from e

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StateError(
                    f"cannot read {self.db_path}: {e}{health.damage_hint(e)}"
                ) from e

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    @staticmethod
    def _changed(cursor: sqlite3.Cursor, what: str) -> None:
        if cursor.rowcount == 0:
            raise StateError(f"no {what}")

    # -- lock -------------------------------------------------------------------------------

    def lock(self, name: str, action: str) -> DeploymentLock:
        """Take the deployment's lock now (use as a context manager to release it);
        ``DeploymentBusy`` at once if anyone holds it, this process included."""
        check_name(name)
        held = self._held.get(name)
        if held is not None:
            raise DeploymentBusy(name, os.getpid(), held.action, held.since)
        deadline = time.monotonic() + locking.SETTLE_SECONDS
        while True:
            try:
                handle = self._locks.try_lock(name)
            except OSError as e:
                raise StateError(f"cannot lock deployment '{name}' in {self.root}: "
                                 f"{e.strerror or e}") from e  # fmt: skip
            if handle is not None:
                break
            holder = self.holder(name)
            alive = holder is not None and locking.pid_alive(holder.pid)
            if alive or time.monotonic() >= deadline:
                if holder is None or not alive:
                    raise DeploymentBusy(name, None, None, None)
                raise DeploymentBusy(name, holder.pid, holder.action, holder.since)
            time.sleep(0.01)
        since = datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT OR REPLACE INTO holders (name, pid, action, since) VALUES (?, ?, ?, ?)",
                    (name, os.getpid(), action, since),
                )
        except BaseException:
            self._locks.unlock(name, handle)
            raise
        taken = DeploymentLock(name, action, since, lambda: self._unlock(name, handle, since))
        self._held[name] = taken
        taken.on_release(lambda lk: self._held.pop(lk.name, None))
        return taken

    def _unlock(self, name: str, handle: int, since: str) -> None:
        try:
            with contextlib.suppress(StateError, sqlite3.Error), self._tx() as c:
                c.execute(
                    "DELETE FROM holders WHERE name = ? AND pid = ? AND since = ?",
                    (name, os.getpid(), since),
                )
        finally:
            self._locks.unlock(name, handle)

    def holder(self, name: str) -> locking.Holder | None:
        """Who holds the deployment's lock now; None when no one does (or it was just taken)."""
        if not self._locks.is_locked(name):
            return None
        row = self._one("SELECT pid, action, since FROM holders WHERE name = ?", (name,))
        return None if row is None else locking.Holder(int(row[0]), str(row[1]), str(row[2]))

    def _dir(self, *parts: str) -> Path:
        """The folder ``parts`` under the state dir, each level made 0700 if missing."""
        path = self.root / Path(*parts)
        if not path.is_dir():
            level = self.root
            try:
                for part in parts:
                    level = _private_dir(level / part)
            except OSError as e:
                raise StateError(f"cannot create {level / part}: {e.strerror or e}") from e
        return path
