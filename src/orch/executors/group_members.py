"""The members of a co-scheduled group on a scheduler without heterogeneous jobs nor steps
(SGE, PBS): the group is ONE job of the site's scheduler (its slots summed, in the parallel
environment), the members run side by side in it, and member K is watched as ``J.K``: the job's
state (the site's own status command) while the member's exit file is not written, then the
exit file's status; a member whose job ended without it failed with the job.
"""

from __future__ import annotations

from orch.executors.base import TAIL_LINES
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import translate
from orch.executors.schedulers import (
    ENDPOINT_LINE,
    JobFiles,
    JobInfo,
    Scheduler,
    job_records,
    to_int,
)

_SEPARATOR = "ORCH-MEMBERS"


class GroupMembers:
    """A ``Scheduler`` for members ``J.K``, over the site's own scheduler for the job ``J``."""

    def __init__(self, base: Scheduler) -> None:
        self.base = base
        self.name = f"{base.name}-members"
        self.title = base.title
        self.table = base.table
        self.doc = base.doc
        self.script_suffix = base.script_suffix
        self.accounting_lag = base.accounting_lag
        self.prologue = base.prologue
        self.job_id_variable = base.job_id_variable

    def header(self, job: JobSettings, files: JobFiles) -> list[str]:
        return self.base.header(job, files)

    def launcher(self, job: JobSettings) -> list[str]:
        return []  # the group's script starts each member

    def submit_command(self, script: str) -> str:
        return self.base.submit_command(script)

    def submitted_id(self, stdout: str) -> str | None:
        return self.base.submitted_id(stdout)

    def find_command(self, execution: str) -> str:
        return self.base.find_command(execution)

    def status_command(self, jobs: dict[str, JobFiles | None]) -> str:
        owners: dict[str, JobFiles | None] = {j.split(".")[0]: None for j in jobs}
        return f"""{self.base.status_command(owners)}
echo {_SEPARATOR}
while IFS='|' read -r id out err ex; do
  {ENDPOINT_LINE}
  [ -f "$ex" ] || continue
  echo "E $id $(cat "$ex")"
  tail -n {TAIL_LINES} "$out" 2>/dev/null | sed "s/^/O $id /"
  tail -n {TAIL_LINES} "$err" 2>/dev/null | sed "s/^/R $id /"
done <<'ORCH_JOBS'
{job_records(jobs)}
ORCH_JOBS
"""

    def parse_status(self, text: str, job_ids: list[str]) -> dict[str, JobInfo]:
        head, _, tail = text.partition(f"{_SEPARATOR}\n")
        owner_ids = sorted({j.split(".")[0] for j in job_ids})
        owners = self.base.parse_status(head, owner_ids)
        exits: dict[str, int] = {}
        endpoints: dict[str, str] = {}
        tails: dict[str, tuple[list[str], list[str]]] = {j: ([], []) for j in job_ids}
        for line in tail.splitlines():
            kind, _, rest = line.partition(" ")
            job_id, _, content = rest.partition(" ")
            if kind == "E" and (code := to_int(content.split()[0] if content else "")) is not None:
                exits[job_id] = code
            elif kind == "H":
                endpoints[job_id] = content.strip()
            elif kind in ("O", "R") and job_id in tails:
                tails[job_id][0 if kind == "O" else 1].append(content)
        infos = {}
        for job_id in job_ids:
            owner_id = job_id.split(".")[0]
            owner = owners.get(owner_id, JobInfo("UNKNOWN", ended=True))
            code = exits.get(job_id)
            if code is not None:
                info = JobInfo("COMPLETED" if code == 0 else "FAILED", code, owner.elapsed,
                               owner.node_list, ended=True)  # fmt: skip
            elif not owner.ended:
                info = JobInfo(owner.state, None, owner.elapsed, owner.node_list,
                               reason=owner.reason)  # fmt: skip
            else:
                word = owner.state.split()[0] if owner.state.split() else "UNKNOWN"
                info = JobInfo("FAILED", owner.exit_code, owner.elapsed, owner.node_list,
                               ended=True, reason=f"its group's job {owner_id} ended ({word}) "
                               "before it did")  # fmt: skip
                if word == "UNKNOWN" or translate(self.table, word).name == "UNKNOWN":
                    info.state = "UNKNOWN"
            info.stdout_tail, info.stderr_tail = tails[job_id]
            info.endpoint = endpoints.get(job_id, "")
            infos[job_id] = info
        return infos

    def unavailable(self, stderr: str) -> bool:
        return self.base.unavailable(stderr)

    def cancel_command(self, job_ids: list[str]) -> str:
        """A member cannot be stopped alone: the group's job goes."""
        return self.base.cancel_command(sorted({j.split(".")[0] for j in job_ids}))

    def already_gone(self, stderr: str) -> bool:
        return self.base.already_gone(stderr)


def members_of(base: Scheduler) -> GroupMembers:
    return GroupMembers(base)
