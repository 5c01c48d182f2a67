"""Noticing that the state was damaged or lost, instead of starting afresh without a word.

A deployment's folder (``deployments/<name>/``, made when the deployment is created) outlives
anything that empties the database: ``state.db`` truncated, replaced by an older copy, or its
WAL deleted before it was checkpointed. A folder whose deployment has no row therefore means
that the database lost deployments; orch then refuses to change anything until the user has
restored the database or chosen to forget them, because deploying again would run everything a
second time beside what is already there, and undeploying would be impossible.

A WAL file deleted while orch runs is noticed after each commit and saved: the frames are still
in the file orch has open, so a checkpoint copies them into the database before they are lost.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger("orch.state")

RECORD = "deployment.json"
"""In each deployment folder: the deployment's name (folder names of non-ASCII names are
hashes) and when it was created."""

TRASH_PREFIX = ".deleting-"
"""A deployment folder renamed so, before its rows are deleted, is not a lost deployment."""


def damage_hint(error: sqlite3.Error) -> str:
    """What to do about a database error that means the file is damaged."""
    text = str(error).lower()
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (
            " (the database file is damaged: restore state.db from a backup, or move the state "
            "folder away to start afresh; what its deployments deployed must then be removed "
            "by hand)"
        )
    return ""


def quick_check(conn: sqlite3.Connection) -> str | None:
    """The first problem SQLite's quick check finds, None when the database is sound."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    answer = str(rows[0][0]) if rows else "ok"
    return None if answer == "ok" else answer


def folder_names(root: Path) -> dict[str, str]:
    """``{folder name: deployment name}`` of the deployment folders under ``root``."""
    found: dict[str, str] = {}
    try:
        entries = list(os.scandir(root / "deployments"))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        found[entry.name] = _recorded_name(Path(entry.path)) or entry.name
    return found


def _recorded_name(folder: Path) -> str | None:
    try:
        name = json.loads((folder / RECORD).read_text("utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def lost_message(root: Path, lost: list[str]) -> str:
    """The one message for deployments whose folder is there and whose rows are not."""
    names = ", ".join(f"'{name}'" for name in sorted(lost))
    return (
        f"the state database {root / 'state.db'} has no record of deployment(s) {names}, whose "
        f"folders are in {root / 'deployments'}: it was emptied, replaced by an older copy or "
        "lost its WAL file (state.db-wal). orch changes nothing until this is resolved: restore "
        "state.db and state.db-wal from a backup; or, to forget those deployments (what they "
        f"deployed must then be removed by hand), move their folders out of {root / 'deployments'}"
    )


class WalWatch:
    """Notices that the WAL file orch writes to was deleted or replaced behind its back."""

    def __init__(self, db_path: Path):
        self.path = Path(f"{db_path}-wal")
        self.identity: tuple[int, int] | None = None

    def lost(self) -> bool:
        """Whether the WAL file known so far is gone (the first call only learns it)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return self.identity is not None
        identity = (info.st_dev, info.st_ino)
        if self.identity is None:
            self.identity = identity
            return False
        return identity != self.identity

    def rescue(self, conn: sqlite3.Connection) -> None:
        """Copy what only the deleted WAL holds into the database, while orch still has it
        open; the caller then reopens its connection, which starts a new WAL."""
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.identity = None
        log.warning(
            "orch: the state database's WAL file %s was deleted while orch was using it; what "
            "it held was saved into the database. Never delete state.db-wal or state.db-shm.",
            self.path,
        )
