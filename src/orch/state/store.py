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
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from orch.state import health
from orch.state.db import _write_atomically
from orch.state.lock import StateError
from orch.state.records import Records
from orch.state.rows import (
    _DEPLOYMENT,
    CREATED,
    INITIAL_STATE,
    Deployment,
    InstanceRow,
    _deployment,
    _dump,
    check_name,
    folder_name,
    is_link,
)


class Store(Records):
    """The state of every deployment in one state dir. Open with ``Store.open``."""

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
