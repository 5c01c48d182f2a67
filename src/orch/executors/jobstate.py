"""A scheduler's own words for a job's state, translated to one ``JobState``.

Each scheduler gets one table, beside a link to where its documentation lists the words. A word
the table does not have is logged and read as ``UNKNOWN``; a job that stays ``UNKNOWN`` for
``MAX_UNKNOWN_POLLS`` polls in a row fails, instead of being polled forever.
"""

from __future__ import annotations

import threading
from enum import Enum


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
    """``word`` (its first word, case ignored) in ``table``'s terms; UNKNOWN when absent."""
    first = word.split()[0].upper() if word.split() else ""
    return table.get(first, JobState.UNKNOWN)


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
