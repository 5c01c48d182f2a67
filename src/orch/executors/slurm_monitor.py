"""Slurm's status command for all the jobs of a site (see ``job_monitor``): ``squeue`` for the
jobs Slurm still holds; for jobs it has forgotten, ``sacct`` when accounting exists, else the
exit file the batch script wrote; and the last lines of the output of jobs that ended.
"""

from __future__ import annotations

from orch.executors.base import TAIL_LINES
from orch.executors.job_monitor import SiteMonitor as SiteMonitor  # re-exported: former home
from orch.executors.job_monitor import query as query
from orch.executors.jobstate import SLURM, translate
from orch.executors.schedulers import ENDPOINT_LINE, JobFiles, job_records, to_int
from orch.executors.schedulers import JobInfo as JobInfo
from orch.executors.schedulers import StatusError as StatusError

ENDED = (
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
)  # fmt: skip
_ACTIVE = "PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED|RESIZING|STOPPED"
"""States of a job that has not ended (its tails and exit file are not read yet)."""
_FORMAT = "JobID:24,State:24,exit_code:12,TimeUsed:16,Reason:48,NodeList:400"
_WIDTHS = (24, 24, 12, 16, 48)
NEVER = frozenset({
    "BadConstraints", "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit",
    "InvalidAccount", "InvalidQOS", "DependencyNeverSatisfied",
})  # fmt: skip
"""squeue's reasons for a pending job that mean it can never start as asked (see
https://slurm.schedmd.com/job_reason_codes.html)."""


def status_command(jobs: dict[str, JobFiles | None]) -> str:
    """One shell command reporting every job: ``Q`` lines from squeue, then per job Slurm does
    not list as running: ``A`` (sacct), ``E`` (exit file), ``O``/``R`` (output tails)."""
    ids = ",".join(jobs)
    records = job_records(jobs)
    return f"""S=$(squeue -h -t all -j {ids} -O {_FORMAT} 2>&1) || case "$S" in
  *"Invalid job id"*) S= ;;
  *) printf '%s\n' "$S" >&2; exit 3 ;;
esac
printf '%s\\n' "$S" | sed -n 's/^/Q /p'
A=$(printf '%s\\n' "$S" | awk '{{printf " %s ", $1}}')
W=$(printf '%s\\n' "$S" | awk '$2 ~ /^({_ACTIVE})$/ {{printf " %s ", $1}}')
while IFS='|' read -r id out err ex; do
  {ENDPOINT_LINE}
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


def parse_status(text: str, job_ids: list[str]) -> dict[str, JobInfo]:
    """The jobs' states from ``status_command``'s output."""
    infos: dict[str, JobInfo] = {}
    exits: dict[str, int] = {}
    endpoints: dict[str, str] = {}
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
                    row[1], to_int(row[2].split(":")[0]), row[3], row[4]
                )
        elif kind == "E":
            job_id, _, code = rest.partition(" ")
            parsed = to_int(code)
            if parsed is not None:
                exits[job_id] = parsed
        elif kind == "H":
            job_id, _, endpoint = rest.partition(" ")
            endpoints[job_id] = endpoint.strip()
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
        elif exits.get(job_id) and info.state == "COMPLETED":
            # a co-scheduled member failed in a job that ended well: its exit file says so
            info.state, info.exit_code = "FAILED", exits[job_id]
        info.endpoint = endpoints.get(job_id, "")
        info.stdout_tail, info.stderr_tail = tails[job_id]
        info.ended = info.state == "UNKNOWN" or translate(SLURM, info.state).ended
    return {job_id: infos[job_id] for job_id in job_ids}


def _squeue_row(row: str) -> tuple[str, JobInfo] | None:
    """squeue's fixed-width columns; its exit_code is the raw wait status (code << 8)."""
    cells, start = [], 0
    for width in _WIDTHS:
        cells.append(row[start : start + width].strip())
        start += width
    cells.append(row[start:].strip())
    job_id, state, status, elapsed, reason, nodes = cells
    if not job_id or not state:
        return None
    raw = to_int(status)
    code = None if raw is None or state in ("PENDING", "RUNNING") else raw >> 8
    info = JobInfo(state, code, elapsed, "" if nodes == "(null)" else nodes)
    if state == "PENDING" and reason in NEVER:
        info.reason = reason
    return job_id, info

