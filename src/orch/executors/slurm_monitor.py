"""Watching every job of a site with one command per poll round.

The engine polls jobs of a batching executor in common rounds (see ``Engine._next_round``): all
watches due in a round ask this monitor at once; the first runs ONE status command on the site
for every job the monitor knows (``squeue`` for the jobs Slurm still holds; for jobs it has
forgotten, ``sacct`` when accounting exists, else the exit file the batch script wrote), and the
others share its answer. The same command brings the last lines of the output of jobs that ended.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from orch.executors.base import TAIL_LINES
from orch.executors.slurm_script import JobFiles
from orch.transport.base import Transport, TransportError

ENDED = (
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
)  # fmt: skip
_ACTIVE = "PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|STOPPED"
"""States of a job that has not ended (its tails and exit file are not read yet)."""
_FORMAT = "JobID:24,State:24,exit_code:12,TimeUsed:16,NodeList:400"
_WIDTHS = (24, 24, 12, 16)


@dataclass
class JobInfo:
    """What one round learnt of a job."""

    state: str
    """Slurm's state (RUNNING, PENDING, COMPLETED...), or UNKNOWN: Slurm forgot the job and it
    left no exit file (it never started, or its folder is gone)."""
    exit_code: int | None = None
    elapsed: str = ""
    node_list: str = ""
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.state.split()[0] in ENDED or self.state == "UNKNOWN"


class StatusError(Exception):
    """The status command could not run (the message says why)."""

    def __init__(self, message: str, *, started: bool = True):
        super().__init__(message)
        self.started = started


class SiteMonitor:
    """The jobs of one site (one login, one connection) and the last round's answers."""

    def __init__(self) -> None:
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
            answers = query(transport, asked, cancel)
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


def status_command(jobs: dict[str, JobFiles | None]) -> str:
    """One shell command reporting every job: ``Q`` lines from squeue, then per job Slurm does
    not list as running: ``A`` (sacct), ``E`` (exit file), ``O``/``R`` (output tails)."""
    ids = ",".join(jobs)
    records = "\n".join(
        "|".join((job_id, f.output(job_id), f.error(job_id), f.exit_file(job_id)))
        if f is not None
        else f"{job_id}|||"
        for job_id, f in jobs.items()
    )
    return f"""S=$(squeue -h -t all -j {ids} -O {_FORMAT} 2>/dev/null)
printf '%s\\n' "$S" | sed -n 's/^/Q /p'
A=$(printf '%s\\n' "$S" | awk '{{printf " %s ", $1}}')
W=$(printf '%s\\n' "$S" | awk '$2 ~ /^({_ACTIVE})$/ {{printf " %s ", $1}}')
while IFS='|' read -r id out err ex; do
  case "$W" in *" $id "*) continue;; esac
  if case "$A" in *" $id "*) false;; esac && command -v sacct >/dev/null 2>&1; then
    sacct -n -P -X -j "$id" -o JobID,State,ExitCode,Elapsed,NodeList 2>/dev/null | sed 's/^/A /'
  fi
  [ -f "$ex" ] && echo "E $id $(cat "$ex")"
  tail -n {TAIL_LINES} "$out" 2>/dev/null | sed "s/^/O $id /"
  tail -n {TAIL_LINES} "$err" 2>/dev/null | sed "s/^/R $id /"
done <<'ORCH_JOBS'
{records}
ORCH_JOBS
"""


def query(
    transport: Transport, jobs: dict[str, JobFiles | None], cancel: threading.Event
) -> dict[str, JobInfo]:
    try:
        result = transport.run(status_command(jobs), timeout=120, cancel=cancel)
    except TransportError as exc:
        raise StatusError(str(exc), started=exc.started) from None
    if result.cancelled or result.timed_out:
        raise StatusError("the status command was cancelled or timed out")
    if result.rc != 0:
        tail = "; ".join((result.stderr or "").strip().splitlines()[-3:])
        raise StatusError(f"the status command exited {result.rc}: {tail}")
    return parse_status(result.stdout or "", list(jobs))


def parse_status(text: str, job_ids: list[str]) -> dict[str, JobInfo]:
    """The jobs' states from ``status_command``'s output."""
    infos: dict[str, JobInfo] = {}
    exits: dict[str, int] = {}
    tails: dict[str, tuple[list[str], list[str]]] = {j: ([], []) for j in job_ids}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "Q":
            info = _squeue_row(rest)
            if info is not None:
                infos.setdefault(info[0], info[1])
        elif kind == "A":
            row = rest.split("|")
            if len(row) >= 5 and row[0] in tails and row[0] not in infos:
                infos[row[0]] = JobInfo(
                    row[1], _code(row[2].split(":")[0]), row[3], row[4]
                )
        elif kind == "E":
            job_id, _, code = rest.partition(" ")
            parsed = _code(code)
            if parsed is not None:
                exits[job_id] = parsed
        elif kind in ("O", "R"):
            job_id, _, content = rest.partition(" ")
            if job_id in tails:
                tails[job_id][0 if kind == "O" else 1].append(content)
    for job_id in job_ids:
        info = infos.get(job_id)
        if info is None:  # forgotten by Slurm: the exit file says how the script ended
            code = exits.get(job_id)
            if code is None:
                info = JobInfo("UNKNOWN")
            else:
                info = JobInfo("COMPLETED" if code == 0 else "FAILED", code)
            infos[job_id] = info
        elif info.exit_code is None and job_id in exits:
            info.exit_code = exits[job_id]
        info.stdout_tail, info.stderr_tail = tails[job_id]
    return {job_id: infos[job_id] for job_id in job_ids}


def _squeue_row(row: str) -> tuple[str, JobInfo] | None:
    """squeue's fixed-width columns; its exit_code is the raw wait status (code << 8)."""
    cells, start = [], 0
    for width in _WIDTHS:
        cells.append(row[start : start + width].strip())
        start += width
    cells.append(row[start:].strip())
    job_id, state, status, elapsed, nodes = cells
    if not job_id or not state:
        return None
    raw = _code(status)
    code = None if raw is None or state in ("PENDING", "RUNNING") else raw >> 8
    return job_id, JobInfo(state, code, elapsed, "" if nodes == "(null)" else nodes)


def _code(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
