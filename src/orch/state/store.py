"""The state store: one SQLite database per state dir, safe against ``kill -9`` at any moment.

Every method that writes is one ``BEGIN IMMEDIATE`` transaction, committed before it returns, so
whatever a caller was told is done survives the process dying right after. WAL with
``synchronous=NORMAL`` keeps commits cheap (no fsync per commit); it can lose the last commits on
a power cut, never on a process crash, and never corrupts the database.

``BEGIN IMMEDIATE`` rather than Python's implicit transactions: it takes the write lock up front,
so a read-modify-write (merging instance attributes) is atomic and concurrent writers wait on
``busy_timeout`` instead of failing with "database is locked" when they upgrade a read lock.

One ``Store`` per thread that writes; other processes open their own. JSON columns round-trip
through ``json``: tuples come back as lists and dict keys as strings.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orch.state import health
from orch.state import lock as locking
from orch.state.lock import DeploymentBusy, DeploymentLock, StateError

SCHEMA_VERSION = 3
BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another process's transaction before giving up."""

RUN_ACTIONS = frozenset({"deploy", "undeploy", "run", "cancel", "update"})
JOB_RUNNING = "running"
JOB_ENDS = frozenset({"completed", "failed", "cancelled"})
RUN_ENDS = frozenset({"ok", "failed", "cancelled", "interrupted"})
OPERATION_ENDS = frozenset({"ok", "failed", "timeout", "cancelled", "interrupted"})
INITIAL_STATE = "initial"
"""The TOSCA state of an instance saved without one."""
CREATED = "created"
"""The status of a deployment just created."""

NAME_RULE = (
    "a deployment name is 1 to 128 letters (any script), digits, '_', '.' and '-', starting "
    "with a letter, a digit or '_'"
)
_NAME = re.compile(r"[^\W][\w.-]{0,127}")
"""Names are never rewritten: what the rule allows is stored and shown exactly as given."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
"""Names that are their own folder name; the others get one made from their hash."""

_V1 = (
    """CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        blueprint TEXT NOT NULL,
        model TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE instances (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        node TEXT NOT NULL,
        state TEXT NOT NULL,
        attributes TEXT NOT NULL,
        PRIMARY KEY (deployment, id)
    ) WITHOUT ROWID""",
    # AUTOINCREMENT: an id, once handed out, never names another run, operation or event (log
    # files and followers polling by id outlive a deleted-then-recreated deployment)
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        action TEXT NOT NULL,
        workflow TEXT,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        pid INTEGER NOT NULL,
        UNIQUE (id, deployment)
    )""",
    "CREATE INDEX runs_by_deployment ON runs (deployment, status)",
    """CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        step TEXT NOT NULL,
        node TEXT NOT NULL,
        instance TEXT NOT NULL,
        interface TEXT NOT NULL,
        operation TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        rc INTEGER,
        started REAL NOT NULL,
        ended REAL,
        outputs TEXT NOT NULL,
        stdout_tail TEXT NOT NULL,
        stderr_tail TEXT NOT NULL,
        message TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        FOREIGN KEY (run_id, deployment) REFERENCES runs (id, deployment) ON DELETE CASCADE
    )""",
    "CREATE INDEX operations_by_run ON operations (run_id, deployment, status)",
    "CREATE INDEX operations_by_deployment ON operations (deployment, id)",
    """CREATE TABLE done_steps (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        plan_kind TEXT NOT NULL,
        step TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (deployment, plan_kind, step)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        run_id INTEGER,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        node TEXT,
        instance TEXT,
        step TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_by_deployment ON events (deployment, id)",
    """CREATE TABLE blobs (
        sha TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
)
_V2 = (
    # one row per execution of a job (a workflow run twice gives two rows): the job's id is
    # written with its submit's record, so a crash right after never loses a running job
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        instance TEXT NOT NULL,
        node TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        submit_op INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL,
        submitted REAL NOT NULL,
        ended REAL
    )""",
    "CREATE INDEX jobs_by_instance ON jobs (deployment, instance, id)",
)
_V3 = (
    # who holds a deployment's lock (the lock itself is a byte of this file: see lock.py)
    """CREATE TABLE holders (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        action TEXT NOT NULL,
        since TEXT NOT NULL
    ) WITHOUT ROWID""",
    # attributes of relationship instances ('web/0->db/0:database'), as instances have theirs
    """CREATE TABLE links (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        attributes TEXT NOT NULL,
        PRIMARY KEY (deployment, id)
    ) WITHOUT ROWID""",
    # where a running operation's command runs ({"pgid": ..., "token": ...}), written as soon
    # as it started, so that a run after a crash finds what survived the orch that started it
    "ALTER TABLE operations ADD COLUMN process TEXT NOT NULL DEFAULT '{}'",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
"""``_MIGRATIONS[v]`` brings a database from ``user_version`` v to v + 1."""


@dataclass
class Deployment:
    name: str
    blueprint: str
    """The blueprint path as the user gave it."""
    model: dict[str, Any]
    inputs: dict[str, Any]
    status: str
    created: float
    updated: float
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class InstanceRow:
    deployment: str
    id: str
    """e.g. 'web/0'."""
    node: str
    state: str | None = None
    """Always set when read. When saving, None keeps the stored state ('initial' for new rows)."""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRow:
    id: int
    deployment: str
    action: str
    workflow: str | None
    started: float
    ended: float | None
    status: str
    pid: int


@dataclass
class OperationRow:
    id: int
    run_id: int
    deployment: str
    step: str
    node: str
    instance: str
    interface: str
    operation: str
    host: str
    status: str
    rc: int | None
    started: float
    ended: float | None
    outputs: dict[str, Any]
    stdout_tail: list[str]
    stderr_tail: list[str]
    message: str
    attempt: int
    process: dict[str, Any] = field(default_factory=dict)
    """Where its command ran while it ran (``pgid``, ``token``, ``host``): see ``Survivor``."""


@dataclass
class JobRow:
    id: int
    deployment: str
    instance: str
    node: str
    run_id: int
    submit_op: int
    job_id: str
    """The id the submit operation gave (TOSCA_JOB_ID)."""
    host: str
    status: str
    """running, completed, failed or cancelled."""
    detail: str
    """The last TOSCA_JOB_STATUS the run operation reported."""
    submitted: float
    ended: float | None

    @property
    def active(self) -> bool:
        return self.status == JOB_RUNNING


_JOB = (
    "id, deployment, instance, node, run_id, submit_op, job_id, host, status, detail, "
    "submitted, ended"
)


@dataclass
class EventRow:
    id: int
    deployment: str
    run_id: int | None
    time: float
    kind: str
    node: str | None
    instance: str | None
    step: str | None
    message: str
    data: dict[str, Any]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def check_name(name: str) -> str:
    """``name`` if the rule allows it, else ``StateError`` quoting the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise StateError(f"invalid deployment name {shown}: {NAME_RULE}")
    return name


def folder_name(name: str) -> str:
    """The file name standing for deployment ``name`` (folders, lock files): the name itself
    when it is plain ASCII, else ``%`` and its hash, so that any name the rule allows fits a
    file system's 255 bytes and two names never share a folder ('%' is not in any name)."""
    check_name(name)
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "%" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]


def is_link(key: str) -> bool:
    """Whether an instance key names a relationship instance ('a/0>b/0#req', see link_key)."""
    return ">" in key and "#" in key


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


_DEPLOYMENT = "name, blueprint, model, inputs, status, created, updated, outputs"
_RUN = "id, deployment, action, workflow, started, ended, status, pid"
_OPERATION = (
    "id, run_id, deployment, step, node, instance, interface, operation, host, status, rc, "
    "started, ended, outputs, stdout_tail, stderr_tail, message, attempt, process"
)
_EVENT = "id, deployment, run_id, time, kind, node, instance, step, message, data"


def _deployment(r: Sequence[Any]) -> Deployment:
    return Deployment(
        r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4], r[5], r[6], json.loads(r[7])
    )


def _operation(r: Sequence[Any]) -> OperationRow:
    return OperationRow(
        *r[:13], json.loads(r[13]), json.loads(r[14]), json.loads(r[15]), r[16], r[17],
        json.loads(r[18]),
    )


def _event(r: Sequence[Any]) -> EventRow:
    return EventRow(*r[:9], json.loads(r[9]))


class Store:
    """The state of every deployment in one state dir. Open with ``Store.open``."""

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
    def open(cls, state_dir: str | Path, *, create: bool = True) -> Store:
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

    def __enter__(self) -> Store:
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

    # -- deployments ------------------------------------------------------------------------

    def create_deployment(
        self, name: str, blueprint: str, model: dict[str, Any], inputs: dict[str, Any]
    ) -> Deployment:
        check_name(name)
        row = (name, blueprint, _dump(model), _dump(inputs), CREATED)
        now = time.time()
        with self._tx() as c:
            if c.execute("SELECT 1 FROM deployments WHERE name = ?", (name,)).fetchone():
                raise StateError(f"deployment '{name}' already exists")
            if self._deployment_dir(name).exists():  # its rows were lost: never start over it
                raise StateError(health.lost_message(self.root, [name]))
            c.execute(
                f"INSERT INTO deployments ({_DEPLOYMENT}) VALUES (?, ?, ?, ?, ?, ?, ?, '{{}}')",
                (*row, now, now),
            )
        # the row first: a folder is never left without its row (which would read as lost)
        folder = self._dir("deployments", folder_name(name))
        record = json.dumps({"name": name, "created": now}, ensure_ascii=False)
        try:
            _write_atomically(folder / health.RECORD, record.encode("utf-8"))
        except OSError as e:
            raise StateError(f"cannot write in {folder}: {e.strerror or e}") from e
        return Deployment(name, blueprint, model, inputs, CREATED, now, now, {})

    def update_snapshot(
        self, name: str, blueprint: str, model: dict[str, Any], inputs: dict[str, Any]
    ) -> None:
        """Replace what the deployment was deployed from (a re-deploy of a changed blueprint)."""
        params = (blueprint, _dump(model), _dump(inputs), time.time(), name)
        with self._tx() as c:
            cursor = c.execute(
                "UPDATE deployments SET blueprint = ?, model = ?, inputs = ?, updated = ? "
                "WHERE name = ?",
                params,
            )
            self._changed(cursor, f"deployment '{name}'")

    def deployment(self, name: str) -> Deployment | None:
        row = self._one(f"SELECT {_DEPLOYMENT} FROM deployments WHERE name = ?", (name,))
        return None if row is None else _deployment(row)

    def deployments(self) -> list[Deployment]:
        rows = self._all(f"SELECT {_DEPLOYMENT} FROM deployments ORDER BY name")
        return [_deployment(r) for r in rows]

    def set_status(self, name: str, status: str) -> None:
        with self._tx() as c:
            cursor = c.execute(
                "UPDATE deployments SET status = ?, updated = ? WHERE name = ?",
                (status, time.time(), name),
            )
            self._changed(cursor, f"deployment '{name}'")

    def set_outputs(self, name: str, outputs: dict[str, Any]) -> None:
        with self._tx() as c:
            cursor = c.execute(
                "UPDATE deployments SET outputs = ?, updated = ? WHERE name = ?",
                (_dump(outputs), time.time(), name),
            )
            self._changed(cursor, f"deployment '{name}'")

    def delete_deployment(self, name: str) -> None:
        """Remove the deployment's rows, folder and lock file. Idempotent, so that a delete
        killed half way can be run again. ``DeploymentBusy`` if another process holds its lock
        (take the lock through this store first to delete at the end of an undeploy)."""
        check_name(name)
        held = self._held.get(name)
        taken = None if held is not None else self.lock(name, "delete")
        try:
            # the folder goes first, out of the way: a folder without its row reads as lost
            folder = self._deployment_dir(name)
            trash = folder.with_name(f"{health.TRASH_PREFIX}{folder.name}-{os.urandom(4).hex()}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(folder, trash)
            with self._tx() as c:
                c.execute("DELETE FROM deployments WHERE name = ?", (name,))
            for left in folder.parent.glob(f"{health.TRASH_PREFIX}{folder.name}-*"):
                shutil.rmtree(left, ignore_errors=True)
        except OSError as e:
            raise StateError(f"cannot remove {folder}: {e.strerror or e}") from e
        finally:
            if taken is not None:
                taken.release()

    def _deployment_dir(self, name: str) -> Path:
        return self.root / "deployments" / folder_name(name)

    # -- blobs ------------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        """Keep ``data`` once, under its sha256 (hex), which is returned."""
        sha = hashlib.sha256(data).hexdigest()
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO blobs (sha, size, data) VALUES (?, ?, ?)",
                (sha, len(data), data),
            )
        return sha

    def blob(self, sha: str) -> bytes:
        row = self._one("SELECT data FROM blobs WHERE sha = ?", (sha,))
        if row is None:
            raise StateError(f"no blob {sha} in {self.db_path}")
        return bytes(row[0])

    def blob_path(self, sha: str, name: str) -> Path:
        """A file holding the blob, named after the basename of ``name`` (executors copy it as
        is), written once under ``blobs/<sha>/`` and reused while its size matches."""
        basename = Path(name).name
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise StateError(f"invalid blob id {sha!r}")
        if basename in ("", ".", ".."):
            raise StateError(f"invalid artifact file name {name!r}")
        size = self._one("SELECT size FROM blobs WHERE sha = ?", (sha,))
        if size is None:
            raise StateError(f"no blob {sha} in {self.db_path}")
        path = self.root / "blobs" / sha / basename
        with contextlib.suppress(OSError):
            if path.stat().st_size == size[0]:
                return path
        folder = self._dir("blobs", sha)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.blob(sha))
            os.replace(tmp, path)  # never a half-written file under the final name
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    # -- instances --------------------------------------------------------------------------

    def save_instances(self, name: str, rows: list[InstanceRow]) -> None:
        """Insert or update instances. For rows already stored, a None ``state`` keeps the
        stored one and ``attributes`` are merged into the stored ones."""
        with self._tx() as c:
            for row in rows:
                if row.deployment != name:
                    raise ValueError(f"instance {row.id} is of {row.deployment!r}, not {name!r}")
                old = c.execute(
                    "SELECT state, attributes FROM instances WHERE deployment = ? AND id = ?",
                    (name, row.id),
                ).fetchone()
                if old is None:
                    state, attributes = row.state or INITIAL_STATE, row.attributes
                else:
                    state = row.state or old[0]
                    attributes = {**json.loads(old[1]), **row.attributes}
                c.execute(
                    "INSERT OR REPLACE INTO instances (deployment, id, node, state, attributes) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, row.id, row.node, state, _dump(attributes)),
                )

    def instances(self, name: str) -> list[InstanceRow]:
        rows = self._all(
            "SELECT deployment, id, node, state, attributes FROM instances "
            "WHERE deployment = ? ORDER BY id",
            (name,),
        )
        return [InstanceRow(*r[:4], json.loads(r[4])) for r in rows]

    def reset_instances(self, name: str) -> None:
        """After a complete undeploy: every instance back to its initial state, no attributes."""
        with self._tx() as c:
            c.execute(
                "UPDATE instances SET state = ?, attributes = '{}' WHERE deployment = ?",
                (INITIAL_STATE, name),
            )
            c.execute("DELETE FROM links WHERE deployment = ?", (name,))

    def update_instances(self, name: str, instance_updates: dict[str, dict[str, Any]]) -> None:
        """Apply ``{instance id: {"state": ..., "attributes": {...}}}`` (both optional)."""
        with self._tx() as c:
            self._apply(c, name, instance_updates)

    @staticmethod
    def _apply(c: sqlite3.Connection, name: str, updates: dict[str, dict[str, Any]]) -> None:
        for instance, update in updates.items():
            unknown = set(update) - {"state", "attributes"}
            if unknown:
                raise ValueError(f"unknown instance update keys {sorted(unknown)}")
            old = c.execute(
                "SELECT state, attributes FROM instances WHERE deployment = ? AND id = ?",
                (name, instance),
            ).fetchone()
            if old is None and is_link(instance) and set(update) == {"attributes"}:
                Store._apply_link(c, name, instance, update["attributes"] or {})
                continue
            if old is None:
                raise StateError(f"deployment '{name}' has no instance '{instance}'")
            attributes = json.loads(old[1])
            attributes.update(update.get("attributes") or {})
            c.execute(
                "UPDATE instances SET state = ?, attributes = ? WHERE deployment = ? AND id = ?",
                (update.get("state") or old[0], _dump(attributes), name, instance),
            )

    @staticmethod
    def _apply_link(c: sqlite3.Connection, name: str, link: str, change: dict[str, Any]) -> None:
        old = c.execute(
            "SELECT attributes FROM links WHERE deployment = ? AND id = ?", (name, link)
        ).fetchone()
        attributes = {**(json.loads(old[0]) if old else {}), **change}
        c.execute(
            "INSERT OR REPLACE INTO links (deployment, id, attributes) VALUES (?, ?, ?)",
            (name, link, _dump(attributes)),
        )

    def link_attributes(self, name: str) -> dict[str, dict[str, Any]]:
        """The attributes set on the deployment's relationship instances, by link key."""
        rows = self._all("SELECT id, attributes FROM links WHERE deployment = ?", (name,))
        return {r[0]: json.loads(r[1]) for r in rows}

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, name: str, action: str, workflow: str | None = None) -> int:
        if action not in RUN_ACTIONS:
            raise ValueError(f"run action {action!r} is not one of {sorted(RUN_ACTIONS)}")
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM deployments WHERE name = ?", (name,)).fetchone():
                raise StateError(f"no deployment '{name}'")
            cursor = c.execute(
                "INSERT INTO runs (deployment, action, workflow, started, status, pid) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                (name, action, workflow, time.time(), os.getpid()),
            )
        run_id = int(cursor.lastrowid or 0)
        self._my_runs.add(run_id)
        return run_id

    def end_run(self, run_id: int, status: str) -> None:
        if status not in RUN_ENDS:
            raise ValueError(f"run status {status!r} is not one of {sorted(RUN_ENDS)}")
        now = time.time()
        with self._tx() as c:
            cursor = c.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ?", (status, now, run_id)
            )
            self._changed(cursor, f"run {run_id}")
            # a run that ends has nothing running (one stopped by an error, say)
            c.execute(
                "UPDATE operations SET status = 'interrupted', ended = ?, message = ? "
                "WHERE run_id = ? AND status = 'running'",
                (now, f"interrupted: its run ended {status}", run_id),
            )
        self._my_runs.discard(run_id)

    def runs(self, name: str) -> list[RunRow]:
        rows = self._all(f"SELECT {_RUN} FROM runs WHERE deployment = ? ORDER BY id", (name,))
        return [RunRow(*r) for r in rows]

    def stale_runs(self, name: str) -> dict[int, int]:
        """``{run id: pid}`` of the runs marked running whose process is gone: no one holds
        the deployment's lock (or this store holds it and did not begin the run), the lock's
        holder is another process, or the run's pid is dead. Reads only.

        The running runs are read before the lock is probed: a run begun later is by a holder
        that wrote its pid first, so a holder read afterwards is never older than the runs.
        """
        running = self._all(
            "SELECT id, pid FROM runs WHERE deployment = ? AND status = 'running'", (name,)
        )
        if not running:
            return {}
        if name in self._held:
            return {rid: pid for rid, pid in running if rid not in self._my_runs}
        if not self._locks.is_locked(name):
            return dict(running)
        holder = self.holder(name)
        return {
            rid: pid
            for rid, pid in running
            if not locking.pid_alive(pid) or (holder is not None and pid != holder.pid)
        }

    def live_status(self, deployment: Deployment) -> str:
        """The status to show: a deployment left 'deploying' (or any status with a run left
        running) by an orch that is gone reads 'interrupted (orch pid N is gone)'."""
        stale = self.stale_runs(deployment.name)
        if not stale:
            return deployment.status
        return f"interrupted (orch pid {stale[max(stale)]} is gone)"

    def interrupt_stale(self, name: str) -> list[OperationRow]:
        """Mark "interrupted" the runs left "running" by a process that is gone (see
        ``stale_runs``), and their running operations, which are returned."""
        gone = self.stale_runs(name)
        if not gone:
            return []
        now = time.time()
        interrupted: list[OperationRow] = []
        with self._tx() as c:
            for rid, pid in gone.items():
                cursor = c.execute(
                    "UPDATE runs SET status = 'interrupted', ended = ? "
                    "WHERE id = ? AND status = 'running'",
                    (now, rid),
                )
                if cursor.rowcount == 0:
                    continue  # ended meanwhile
                message = f"interrupted: the orch process (pid {pid}) stopped during the operation"
                ids = [
                    r[0]
                    for r in c.execute(
                        "SELECT id FROM operations WHERE run_id = ? AND status = 'running'", (rid,)
                    )
                ]
                for op_id in ids:
                    c.execute(
                        "UPDATE operations SET status = 'interrupted', ended = ?, message = ? "
                        "WHERE id = ?",
                        (now, message, op_id),
                    )
                    row = c.execute(
                        f"SELECT {_OPERATION} FROM operations WHERE id = ?", (op_id,)
                    ).fetchone()
                    interrupted.append(_operation(row))
        return interrupted

    # -- operations -------------------------------------------------------------------------

    def begin_operation(
        self,
        run_id: int,
        name: str,
        step: str,
        node: str,
        instance: str,
        interface: str,
        operation: str,
        host: str,
        attempt: int = 1,
        process: dict[str, Any] | None = None,
    ) -> int:
        """An operation's record, written before it runs; ``process`` says how to recognise
        what it starts on its host should this orch die (see ``survivors``)."""
        params = (run_id, name, step, node, instance, interface, operation, host, time.time())
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO operations (run_id, deployment, step, node, instance, interface, "
                "operation, host, status, started, outputs, stdout_tail, stderr_tail, message, "
                "attempt, process) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, '{}', '[]', '[]', '', ?, ?)",
                (*params, attempt, _dump(process or {})),
            )
        return int(cursor.lastrowid or 0)

    def unsettled(self, name: str) -> list[OperationRow]:
        """Interrupted operations whose processes may still run (their survivors were not
        looked for yet), oldest first."""
        rows = self._all(
            f"SELECT {_OPERATION} FROM operations WHERE deployment = ? AND status = "
            "'interrupted' AND json_extract(process, '$.token') IS NOT NULL "
            "AND json_extract(process, '$.settled') IS NULL ORDER BY id",
            (name,),
        )
        return [_operation(r) for r in rows]

    def set_operation_process(self, op_id: int, process: dict[str, Any]) -> None:
        """Replace what is known of the operation's processes (see ``begin_operation``)."""
        with self._tx() as c:
            c.execute("UPDATE operations SET process = ? WHERE id = ?", (_dump(process), op_id))

    def finish_operation(
        self,
        op_id: int,
        *,
        status: str,
        rc: int | None,
        outputs: dict[str, Any],
        stdout_tail: list[str],
        stderr_tail: list[str],
        message: str,
        instance_updates: dict[str, dict[str, Any]] | None = None,
        done_step: tuple[str, str] | None = None,
        job_id: str | None = None,
    ) -> None:
        """Record the end of an operation, with the instance changes it made, (for resume) its
        step done and (for a job's submit) the job it started, all or nothing."""
        if status not in OPERATION_ENDS:
            raise ValueError(f"operation status {status!r} is not one of {sorted(OPERATION_ENDS)}")
        now = time.time()
        params = (status, rc, now, _dump(outputs), _dump(stdout_tail), _dump(stderr_tail))
        with self._tx() as c:
            row = c.execute("SELECT deployment FROM operations WHERE id = ?", (op_id,)).fetchone()
            if row is None:
                raise StateError(f"no operation {op_id}")
            c.execute(
                "UPDATE operations SET status = ?, rc = ?, ended = ?, outputs = ?, "
                "stdout_tail = ?, stderr_tail = ?, message = ? WHERE id = ?",
                (*params, message, op_id),
            )
            if instance_updates:
                self._apply(c, row[0], instance_updates)
            if done_step is not None:
                self._done(c, row[0], done_step[0], done_step[1], now)
            if job_id is not None:
                c.execute(
                    "INSERT INTO jobs (deployment, instance, node, run_id, submit_op, job_id, "
                    "host, status, detail, submitted) SELECT deployment, instance, node, run_id, "
                    "id, ?, host, ?, 'SUBMITTED', ? FROM operations WHERE id = ?",
                    (job_id, JOB_RUNNING, now, op_id),
                )

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self, name: str, *, active: bool = False) -> list[JobRow]:
        """Every execution of the deployment's jobs, oldest first (only running ones when
        ``active``)."""
        where = "deployment = ?" + (" AND status = ?" if active else "")
        params = (name, JOB_RUNNING) if active else (name,)
        rows = self._all(f"SELECT {_JOB} FROM jobs WHERE {where} ORDER BY id", params)
        return [JobRow(*r) for r in rows]

    def active_job(self, name: str, instance: str) -> JobRow | None:
        """The instance's newest job, when it is still running."""
        row = self._one(
            f"SELECT {_JOB} FROM jobs WHERE deployment = ? AND instance = ? ORDER BY id DESC "
            "LIMIT 1",
            (name, instance),
        )
        job = None if row is None else JobRow(*row)
        return job if job is not None and job.active else None

    def update_job(self, job: int, *, status: str | None = None, detail: str | None = None) -> None:
        if status is not None and status != JOB_RUNNING and status not in JOB_ENDS:
            raise ValueError(f"job status {status!r} is not one of {sorted(JOB_ENDS)}")
        with self._tx() as c:
            if detail is not None:
                c.execute("UPDATE jobs SET detail = ? WHERE id = ?", (detail, job))
            if status is not None:
                ended = None if status == JOB_RUNNING else time.time()
                c.execute(
                    "UPDATE jobs SET status = ?, ended = ? WHERE id = ?", (status, ended, job)
                )

    def operations(self, name: str, run_id: int | None = None) -> list[OperationRow]:
        if run_id is None:
            sql, params = "deployment = ?", (name,)
        else:
            sql, params = "deployment = ? AND run_id = ?", (name, run_id)
        rows = self._all(f"SELECT {_OPERATION} FROM operations WHERE {sql} ORDER BY id", params)
        return [_operation(r) for r in rows]

    def operation(self, op_id: int) -> OperationRow | None:
        row = self._one(f"SELECT {_OPERATION} FROM operations WHERE id = ?", (op_id,))
        return None if row is None else _operation(row)

    def log_path(self, name: str, op_id: int) -> Path:
        """Where the executor writes the operation's full output; the folder is created."""
        return self._dir("deployments", folder_name(name), "logs") / f"{int(op_id)}.log"

    # -- steps done -------------------------------------------------------------------------

    def done_steps(self, name: str, plan_kind: str) -> set[str]:
        rows = self._all(
            "SELECT step FROM done_steps WHERE deployment = ? AND plan_kind = ?", (name, plan_kind)
        )
        return {r[0] for r in rows}

    def mark_step_done(
        self,
        name: str,
        plan_kind: str,
        step: str,
        instance_updates: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """For steps without an operation (state changes): the updates and the mark, atomically."""
        with self._tx() as c:
            if instance_updates:
                self._apply(c, name, instance_updates)
            self._done(c, name, plan_kind, step, time.time())

    @staticmethod
    def _done(c: sqlite3.Connection, name: str, plan_kind: str, step: str, now: float) -> None:
        c.execute(
            "INSERT OR REPLACE INTO done_steps (deployment, plan_kind, step, time) "
            "VALUES (?, ?, ?, ?)",
            (name, plan_kind, step, now),
        )

    def unmark_step_done(self, name: str, plan_kind: str, step: str) -> None:
        """The step runs again on resume (a job that failed is submitted again)."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                (name, plan_kind, step),
            )

    def unmark_steps_done(self, name: str, plan_kind: str, steps: set[str]) -> None:
        """These steps run again on the next run of that kind (an update's re-runs)."""
        with self._tx() as c:
            c.executemany(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                [(name, plan_kind, step) for step in sorted(steps)],
            )

    def forget_instances(self, name: str, reset: set[str], remove: set[str]) -> None:
        """After an update deleted instances: ``reset`` ones start again from scratch (state
        initial, no attributes, their deploy steps not done), ``remove`` ones are gone; the
        relationships and steps involving either go too. All or nothing."""
        gone = reset | remove

        def involved(key: str) -> bool:
            owner = key.split(":", 1)[0]
            source, _, rest = owner.partition(">")
            return source in gone or rest.split("#", 1)[0] in gone

        with self._tx() as c:
            steps = c.execute(
                "SELECT plan_kind, step FROM done_steps WHERE deployment = ?", (name,)
            ).fetchall()
            c.executemany(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                [(name, kind, step) for kind, step in steps if involved(step)],
            )
            links = c.execute("SELECT id FROM links WHERE deployment = ?", (name,)).fetchall()
            c.executemany(
                "DELETE FROM links WHERE deployment = ? AND id = ?",
                [(name, link) for (link,) in links if involved(link)],
            )
            c.executemany(
                "UPDATE instances SET state = ?, attributes = '{}' WHERE deployment = ? AND id = ?",
                [(INITIAL_STATE, name, instance) for instance in sorted(reset)],
            )
            c.executemany(
                "DELETE FROM instances WHERE deployment = ? AND id = ?",
                [(name, instance) for instance in sorted(remove)],
            )

    def clear_done_steps(self, name: str, plan_kind: str) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ?", (name, plan_kind)
            )

    # -- events -----------------------------------------------------------------------------

    def add_event(
        self,
        name: str,
        run_id: int | None,
        kind: str,
        *,
        node: str | None = None,
        instance: str | None = None,
        step: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int:
        params = (name, run_id, time.time(), kind, node, instance, step, message, _dump(data or {}))
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO events (deployment, run_id, time, kind, node, instance, step, "
                "message, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        return int(cursor.lastrowid or 0)

    def last_event_time(self, run_id: int) -> float | None:
        """When the run recorded its last event (the last sign of life of a run that died)."""
        row = self._one("SELECT max(time) FROM events WHERE run_id = ?", (run_id,))
        return None if row is None or row[0] is None else float(row[0])

    def events(self, name: str, after_id: int = 0, limit: int | None = None) -> list[EventRow]:
        """Events with an id above ``after_id``, oldest first: a follower passes its last id."""
        rows = self._all(
            f"SELECT {_EVENT} FROM events WHERE deployment = ? AND id > ? ORDER BY id LIMIT ?",
            (name, after_id, -1 if limit is None else limit),
        )
        return [_event(r) for r in rows]

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

    # -- health -----------------------------------------------------------------------------

    def lost_deployments(self) -> list[str]:
        """Deployments whose folder is here and whose rows are not (see ``health``)."""
        folders = health.folder_names(self.root)
        if not folders:
            return []
        known = {folder_name(d.name) for d in self.deployments()}
        return sorted(name for folder, name in folders.items() if folder not in known)

    def check_health(self) -> None:
        """``StateError`` when the database is damaged or lost deployments: run before
        changing anything."""
        lost = self.lost_deployments()
        if lost:
            raise StateError(health.lost_message(self.root, lost))
        with self._mutex:
            try:
                problem = health.quick_check(self._conn)
            except sqlite3.Error as e:
                raise StateError(f"cannot read {self.db_path}: {e}{health.damage_hint(e)}") from e
        if problem is not None:
            raise StateError(
                f"the state database {self.db_path} is damaged ({problem}): restore it from a "
                "backup, or move the state folder away to start afresh; what its deployments "
                "deployed must then be removed by hand"
            )
