"""One status command per round for a site login, shared by every orch process of one folder
(``ORCH_MONITOR_DIR``): ``orch serve`` runs each execution as its own ``orch run``, and without
this, 50 executions on one site would each ask the scheduler every round.

The processes meet in two files per login: a lock, and a JSON record of which jobs each live
process watches and the last round's answers. A process that needs an answer newer than the
record's takes the lock, asks the site for the jobs of every process, writes the answers and
lets the lock go; the processes waiting on the lock meanwhile find them there. The record may
vanish or be damaged at any time: it is then only a round asked again."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orch.executors.job_monitor import SiteMonitor, query
from orch.executors.schedulers import JobFiles, JobInfo, Scheduler, StatusError
from orch.transport.base import Transport

MONITOR_DIR_ENV = "ORCH_MONITOR_DIR"
"""A folder (0700, of this user) where orch processes share their status rounds."""


def shared_folder() -> Path | None:
    folder = os.environ.get(MONITOR_DIR_ENV)
    return Path(folder) if folder else None


class SharedSiteMonitor(SiteMonitor):
    """A ``SiteMonitor`` whose rounds are shared with the other processes of ``folder``."""

    def __init__(self, scheduler: Scheduler, folder: Path, key: tuple[Any, ...]) -> None:
        super().__init__(scheduler)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
        self.record = folder / f"{name}.json"
        self.lock_path = folder / f"{name}.lock"
        self.pid = str(os.getpid())

    # -- the record ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """The record, read under the lock and written back when the block ends."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None and cancel.is_set():
                        raise StatusError("cancelled", started=False) from None
                    time.sleep(0.02)
            state = self._read()
            yield state
            self._write(state)
        finally:
            os.close(fd)  # lets the lock go

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.record.read_text())
        except (OSError, ValueError):
            state = None
        if not isinstance(state, dict):
            state = {}
        state.setdefault("wanted", {})
        state.setdefault("answers", {})
        state.setdefault("asked", [])
        state.setdefault("with_files", [])
        state.setdefault("taken", float("-inf"))
        for pid in [p for p in state["wanted"] if p != self.pid and not _alive(p)]:
            del state["wanted"][pid]  # a process gone (even killed): its jobs are not asked
        return state

    def _write(self, state: dict[str, Any]) -> None:
        temporary = self.record.with_name(f"{self.record.name}.{self.pid}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(state, out)
        os.replace(temporary, self.record)

    def _mine(self, state: dict[str, Any]) -> dict[str, Any]:
        return state["wanted"].setdefault(self.pid, {})

    # -- the monitor --------------------------------------------------------------------------
    def expect(self, job_id: str) -> None:
        with self._locked() as state:
            self._mine(state).setdefault(job_id, None)

    def forget(self, job_id: str) -> None:
        with self._locked() as state:
            self._mine(state).pop(job_id, None)

    def status(
        self,
        job_id: str,
        files: JobFiles,
        transport: Transport,
        *,
        due: float | None,
        cancel: threading.Event,
        env: dict[str, str] | None = None,
    ) -> JobInfo:
        """As ``SiteMonitor.status``, the round possibly taken by another process."""
        need = time.time() - (time.monotonic() - due) if due is not None else time.time()
        with self._locked(cancel) as state:
            self._mine(state)[job_id] = dataclasses.asdict(files)
            answer = state["answers"].get(job_id)
            fresh = state["taken"] >= need and job_id in state["asked"]
            # an end judged without the job's files is asked again, with them
            if fresh and isinstance(answer, dict) and (
                not answer.get("ended") or job_id in state["with_files"]
            ):
                return JobInfo(**answer)
            asked: dict[str, JobFiles | None] = {}
            for jobs in state["wanted"].values():
                for other, where in jobs.items():
                    if asked.get(other) is None:
                        asked[other] = JobFiles(**where) if isinstance(where, dict) else None
            started = time.time()
            answers = query(self.scheduler, transport, asked, cancel, env)
            self.rounds += 1
            state["answers"] = {j: dataclasses.asdict(info) for j, info in answers.items()}
            state["asked"] = sorted(asked)
            state["with_files"] = sorted(j for j, f in asked.items() if f is not None)
            state["taken"] = started
            return answers[job_id]


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return pid.isdigit()
    return True
