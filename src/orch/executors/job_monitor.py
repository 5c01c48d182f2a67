"""Watching every job of a site with one command per poll round, whatever the scheduler.

The engine polls jobs of a batching executor in common rounds (see ``Poller.next_round``): all
watches due in a round ask this monitor at once; the first runs ONE status command on the site
for every job the monitor knows (the scheduler's ``status_command``: e.g. squeue, or qstat, then
accounting or the exit file for jobs it has forgotten), and the others share its answer. The
same command brings the last lines of the output of jobs that ended.
"""

from __future__ import annotations

import threading
import time

from orch.executors.schedulers import JobFiles, JobInfo, Scheduler, StatusError
from orch.transport.base import Transport, TransportError


class SiteMonitor:
    """The jobs of one site (one login, one connection) and the last round's answers."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._cond = threading.Condition()
        self._jobs: dict[str, JobFiles | None] = {}
        """The jobs watched; files None until the job's first poll says where they are."""
        self._answers: dict[str, JobInfo] = {}
        self._asked: frozenset[str] = frozenset()
        self._asked_with_files: frozenset[str] = frozenset()
        self._taken = float("-inf")
        self._querying = False
        self.rounds = 0
        """Status commands run (for the benchmark and tests)."""

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
        """The job's state as of a status command started at or after ``due`` (now if None)."""
        need = time.monotonic() if due is None else due
        with self._cond:
            self._jobs[job_id] = files
            while True:
                if self._taken >= need and job_id in self._asked:
                    answer = self._answers[job_id]
                    # an end judged without the job's files (no exit file, no output tail)
                    # is asked again, with them
                    if not answer.ended or job_id in self._asked_with_files:
                        return answer
                if not self._querying:
                    break
                self._cond.wait(0.2)
                if cancel.is_set():
                    raise StatusError("cancelled", started=False)
            self._querying = True
            asked = dict(self._jobs)
        started = time.monotonic()
        answers: dict[str, JobInfo] | None = None
        try:
            answers = query(self.scheduler, transport, asked, cancel, env)
        finally:
            with self._cond:
                self._querying = False
                if answers is not None:
                    self.rounds += 1
                    self._answers, self._asked, self._taken = answers, frozenset(asked), started
                    self._asked_with_files = frozenset(j for j, f in asked.items() if f)
                self._cond.notify_all()
        return answers[job_id]

    def expect(self, job_id: str) -> None:
        """A job about to be watched: the next round asks for it too, so that the first polls
        of many jobs, which reach the monitor a few at a time, share one command."""
        with self._cond:
            self._jobs.setdefault(job_id, None)

    def forget(self, job_id: str) -> None:
        """The job ended (or was cancelled): later rounds no longer ask for it."""
        with self._cond:
            self._jobs.pop(job_id, None)


def query(
    scheduler: Scheduler,
    transport: Transport,
    jobs: dict[str, JobFiles | None],
    cancel: threading.Event,
    env: dict[str, str] | None = None,
) -> dict[str, JobInfo]:
    """The jobs' states, from one status command on the site."""
    try:
        result = transport.run(
            scheduler.status_command(jobs), env=env, timeout=120, cancel=cancel
        )
    except TransportError as exc:
        raise StatusError(str(exc), started=exc.started) from None
    if result.cancelled or result.timed_out:
        raise StatusError("the status command was cancelled or timed out")
    if result.rc != 0:
        tail = "; ".join((result.stderr or "").strip().splitlines()[-3:])
        raise StatusError(
            f"the status command exited {result.rc}: {tail}",
            unavailable=scheduler.unavailable(result.stderr or ""),
        )
    return scheduler.parse_status(result.stdout or "", list(jobs))
