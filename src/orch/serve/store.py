"""``orch serve``'s own records, in one SQLite file beside orch's state (``<state>/serve/``):
users, their tokens (only a hash of each secret is kept), published workflows, SSH keys made
for users, and executions (which ``orch run`` process runs each one, and how it ended)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, hash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS publications (
  name TEXT PRIMARY KEY, deployment TEXT NOT NULL, workflow TEXT NOT NULL,
  users TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ssh_keys (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, metadata TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, publication TEXT NOT NULL,
  deployment TEXT NOT NULL, workflow TEXT NOT NULL, pid INTEGER, process_start TEXT,
  created REAL NOT NULL, status TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
  outputs TEXT NOT NULL DEFAULT '{}', ended REAL);
CREATE INDEX IF NOT EXISTS executions_by_user ON executions (user, created);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
"""

USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
PUBLICATION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
RUNNING, SUCCESS, FAILED, CANCELLING, CANCELLED = (
    "RUNNING", "SUCCESS", "FAILED", "CANCELLING", "CANCELLED"
)  # fmt: skip
ACTIVE = (RUNNING, CANCELLING)


class ServeError(Exception):
    """A request on the records that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Publication:
    name: str
    deployment: str
    workflow: str
    users: tuple[str, ...]
    """Who may see and run it; empty: every user."""
    own_accounts: bool = False
    """Its executions log into sites with their invoker's own accounts only, never with
    sites.yaml's (the publisher's)."""

    def visible_to(self, user: str) -> bool:
        return not self.users or user in self.users


@dataclass(frozen=True)
class Execution:
    id: str
    user: str
    publication: str
    deployment: str
    workflow: str
    pid: int | None
    process_start: str | None
    created: float
    status: str
    cancel_requested: bool
    outputs: dict[str, Any]
    ended: float | None


@dataclass(frozen=True)
class SshKey:
    id: str
    """The credential token of orch's credential store."""
    user: str
    metadata: dict[str, Any]
    created: float


def serve_dir(state_dir: Path) -> Path:
    """The server's folder in orch's state folder (0700)."""
    path = Path(state_dir) / "serve"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ServeStore:
    """The records; every call opens its own connection (the server's threads share none)."""

    def __init__(self, state_dir: Path):
        self.folder = serve_dir(state_dir)
        self.path = self.folder / "serve.db"
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(publications)")}
            if "own_accounts" not in columns:  # records of an earlier orch
                db.execute("ALTER TABLE publications ADD COLUMN own_accounts INTEGER "
                           "NOT NULL DEFAULT 0")  # fmt: skip
                db.commit()
        os.chmod(self.path, 0o600)
        self._local = threading.local()
        """Each thread's own connection, kept: opening one costs more than a query."""

    @contextlib.contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction on this thread's connection: a write takes the write lock at once
        (BEGIN IMMEDIATE), a read does not, so that concurrent reads never queue on it."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- users and tokens --------------------------------------------------------------------
    def add_user(self, name: str) -> None:
        if not USER_NAME.fullmatch(name):
            raise ServeError(
                f"invalid user name {name!r}: 1 to 64 letters, digits, '_', '.', '@' or '-'"
            )
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ServeError(f"user '{name}' exists already")
            db.execute("INSERT INTO users VALUES (?, ?)", (name, time.time()))

    def users(self) -> list[tuple[str, int]]:
        """Every user with how many tokens they have."""
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT u.name, COUNT(t.id) FROM users u LEFT JOIN tokens t ON t.user = u.name "
                "GROUP BY u.name ORDER BY u.name"
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def remove_user(self, name: str) -> None:
        """The user and their tokens (their executions' records stay)."""
        with self._db() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise ServeError(f"no user '{name}'")
            db.execute("DELETE FROM tokens WHERE user = ?", (name,))

    def create_token(self, user: str) -> tuple[str, str]:
        """A new token for ``user``: (its id, the token to give them, shown only now)."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._db() as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone():
                raise ServeError(f"no user '{user}' (add it: orch users add {user})")
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                (token_id, user, _hash(secret), time.time()),
            )
        return token_id, f"{token_id}.{secret}"

    def tokens(self) -> list[tuple[str, str, float]]:
        """Every token as (id, user, created): never the secret, which is not kept."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT id, user, created FROM tokens ORDER BY user, created")
            return [(r["id"], r["user"], r["created"]) for r in rows.fetchall()]

    def revoke_token(self, token_id: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount == 0:
                raise ServeError(f"no token '{token_id}'")

    def user_of(self, token: str) -> str | None:
        """The user a bearer token belongs to; None for a token unknown, malformed or
        revoked."""
        token_id, _, secret = token.partition(".")
        if not token_id or not secret:
            return None
        with self._db(write=False) as db:
            row = db.execute("SELECT user, hash FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            hmac.compare_digest(_hash(secret), _hash(""))  # about the same time either way
            return None
        return row["user"] if hmac.compare_digest(_hash(secret), row["hash"]) else None

    # -- publications ------------------------------------------------------------------------
    def publish(
        self, name: str, deployment: str, workflow: str, users: list[str],
        own_accounts: bool = False,
    ) -> None:  # fmt: skip
        if not PUBLICATION_NAME.fullmatch(name):
            raise ServeError(
                f"invalid workflow name {name!r}: 1 to 128 letters, digits, '_', '.' or '-'"
            )
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO publications (name, deployment, workflow, users, "
                "created, own_accounts) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    deployment,
                    workflow,
                    json.dumps(sorted(set(users))),
                    time.time(),
                    int(own_accounts),
                ),
            )

    def unpublish(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM publications WHERE name = ?", (name,)).rowcount == 0:
                raise ServeError(f"no published workflow '{name}'")

    def publications(self) -> list[Publication]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM publications ORDER BY name").fetchall()
        return [
            Publication(
                r["name"],
                r["deployment"],
                r["workflow"],
                tuple(json.loads(r["users"])),
                bool(r["own_accounts"]),
            )
            for r in rows
        ]

    def publication(self, name: str) -> Publication | None:
        return next((p for p in self.publications() if p.name == name), None)

    # -- SSH keys ----------------------------------------------------------------------------
    def add_ssh_key(self, token: str, user: str, metadata: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO ssh_keys VALUES (?, ?, ?, ?)",
                (token, user, json.dumps(metadata), time.time()),
            )

    def ssh_keys(self, user: str) -> list[SshKey]:
        """The keys made for ``user``, oldest first."""
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT * FROM ssh_keys WHERE user = ? ORDER BY created", (user,)
            ).fetchall()
        return [SshKey(r["id"], r["user"], json.loads(r["metadata"]), r["created"]) for r in rows]

    def remove_ssh_key(self, key_id: str, user: str) -> bool:
        """Forget ``user``'s key ``key_id``; False when they have no such key."""
        with self._db() as db:
            removed = db.execute("DELETE FROM ssh_keys WHERE id = ? AND user = ?",
                                 (key_id, user)).rowcount  # fmt: skip
        return removed > 0

    def accounts(self, user: str) -> dict[str, dict[str, str]]:
        """``{site: {"user": login, "credentials": key id}}``: the site accounts ``user``
        made keys for (metadata ``site`` and ``login``); the newest key of a site wins."""
        found: dict[str, dict[str, str]] = {}
        for key in self.ssh_keys(user):
            site, login = key.metadata.get("site"), key.metadata.get("login")
            if isinstance(site, str) and isinstance(login, str) and site and login:
                found[site] = {"user": login, "credentials": key.id}
        return found

    # -- executions --------------------------------------------------------------------------
    def add_execution(self, execution_id: str, user: str, publication: Publication) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO executions (id, user, publication, deployment, workflow, created, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (execution_id, user, publication.name, publication.deployment,
                 publication.workflow, time.time(), RUNNING),
            )  # fmt: skip

    def set_process(self, execution_id: str, pid: int, process_start: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE executions SET pid = ?, process_start = ? WHERE id = ?",
                (pid, process_start, execution_id),
            )

    def request_cancel(self, execution_id: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE executions SET cancel_requested = 1, status = ? "
                "WHERE id = ? AND status = ?",
                (CANCELLING, execution_id, RUNNING),
            )

    def finish(self, execution_id: str, status: str, outputs: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE executions SET status = ?, outputs = ?, ended = ? WHERE id = ?",
                (status, json.dumps(outputs, default=str), time.time(), execution_id),
            )

    def executions_of(self, user: str, offset: int, limit: int) -> tuple[list[Execution], int]:
        """A page of ``user``'s executions, newest first, and how many they have."""
        with self._db(write=False) as db:
            total = db.execute("SELECT COUNT(*) FROM executions WHERE user = ?",
                               (user,)).fetchone()[0]  # fmt: skip
            rows = db.execute(
                "SELECT * FROM executions WHERE user = ? ORDER BY created DESC, id "
                "LIMIT ? OFFSET ?", (user, limit, offset),
            ).fetchall()  # fmt: skip
        return [_execution(row) for row in rows], total

    def executions(self, *, active: bool = False, deployment: str | None = None) -> list[Execution]:
        """Executions, oldest first: only active ones, only those of ``deployment``."""
        where, params = [], []
        if active:
            where.append(f"status IN {ACTIVE}")
        if deployment is not None:
            where.append("deployment = ?")
            params.append(deployment)
        query = "SELECT * FROM executions" + (" WHERE " + " AND ".join(where) if where else "")
        with self._db(write=False) as db:
            rows = db.execute(query + " ORDER BY created", params).fetchall()
        return [_execution(row) for row in rows]

    def execution(self, execution_id: str) -> Execution | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return _execution(row) if row is not None else None


def _execution(row: sqlite3.Row) -> Execution:
    return Execution(
        id=row["id"], user=row["user"], publication=row["publication"],
        deployment=row["deployment"], workflow=row["workflow"], pid=row["pid"],
        process_start=row["process_start"], created=row["created"], status=row["status"],
        cancel_requested=bool(row["cancel_requested"]), outputs=json.loads(row["outputs"]),
        ended=row["ended"],
    )  # fmt: skip
