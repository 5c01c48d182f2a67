"""A scheduler's own words for a job's state, translated to one ``JobState``.

Each scheduler gets one table, beside a link to where its documentation lists the words. A word
the table does not have is logged and read as ``UNKNOWN``; a job that stays ``UNKNOWN`` for
``MAX_UNKNOWN_POLLS`` polls in a row fails, instead of being polled forever.
"""

from __future__ import annotations

import re
import threading
from enum import Enum
from typing import Any

JOB_ID = "TOSCA_JOB_ID"
"""The output a submit reports its job's id in (Yorc's convention)."""
JOB_STATUS = "TOSCA_JOB_STATUS"
"""The output a run reports its job's state in."""

_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
}  # fmt: skip
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*")

def parse_duration(value: Any) -> float | None:
    """Seconds from ``5``, ``"5 s"``, ``"5s"``, ``"300ms"``, ``"1 m"``; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        return None
    unit = match.group(2).lower() or "s"
    if unit not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[unit]




class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN = "UNKNOWN"

    @property
    def ended(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
                        JobState.TIMEOUT)  # fmt: skip


SLURM_DOC = "https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES"
SLURM: dict[str, JobState] = {
    # waiting, or held, for resources, a reservation or the user
    "PENDING": JobState.PENDING, "REQUEUED": JobState.PENDING, "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "CONFIGURING": JobState.PENDING, "SUSPENDED": JobState.PENDING, "STOPPED": JobState.PENDING,
    # started
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING, "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING, "STAGE_OUT": JobState.RUNNING,
    # ended
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "NODE_FAIL": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED, "PREEMPTED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED, "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT,
}  # fmt: skip
"""squeue's and sacct's state names (``CANCELLED by 1000`` is read by its first word)."""

MAX_UNKNOWN_POLLS = 20
"""Polls in a row a job may stay in a state orch does not know before it fails."""


def translate(table: dict[str, JobState], word: str) -> JobState:
    """``word`` (its first word) in ``table``'s terms; UNKNOWN when absent. The word is looked
    up as written (SGE's ``s`` and ``S`` differ), then in capitals (Slurm's words)."""
    first = word.split()[0] if word.split() else ""
    return table.get(first) or table.get(first.upper(), JobState.UNKNOWN)


class UnknownStates:
    """How many polls in a row each job was in a state its table lacks."""

    def __init__(self, limit: int = MAX_UNKNOWN_POLLS):
        self.limit = limit
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def seen(self, job: str, word: str, scheduler: str, doc: str) -> tuple[str, bool]:
        """Count one more poll of ``job`` in ``word``: (what to log, whether to give up)."""
        with self._lock:
            count = self._seen[job] = self._seen.get(job, 0) + 1
        give_up = count >= self.limit
        then = f"asking again ({count}/{self.limit})"
        if give_up:
            then = f"giving up after {count} polls"
        what = f"{scheduler} says job {job} is '{word}', a state orch does not know ({doc}): {then}"
        return what, give_up

    def known(self, job: str) -> None:
        """The job is in a known state again: its count starts over."""
        with self._lock:
            self._seen.pop(job, None)
