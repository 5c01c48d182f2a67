"""Co-scheduled jobs (``orch.groups.CoScheduled``): the job nodes of one group start together,
as ONE Slurm job, and find each other.

A Slurm heterogeneous job, one component per member with the member's own nodes, tasks, CPUs,
memory, partition...; each member runs with ``srun --het-group=K`` on its component's nodes
and is watched, reported and cancelled through its component's own job id.

The batch script learns where each member runs once the job starts (Slurm's
``SLURM_JOB_NODELIST_HET_GROUP_K``) and gives each member:
``ORCH_HOST`` and ``ORCH_PORT`` (its own address and port: its ``port`` property, else one
derived from the job id), and for every member of the group (itself too) ``<NODE>_HOST``,
``<NODE>_PORT`` and ``<NODE>_ENDPOINT`` (host:port): coupled applications usually talk both
ways, which requirements cannot say (a cycle). Each member's endpoint is written beside
its output (``<node>-<id>.endpoint``): the watch makes it the ``host`` and ``endpoint``
attributes, for ``get_attribute`` in later operations and for ``orch connect``. Each member has
its own output, error and exit files, named by its component's job id, so that each member is
watched, reported and cancelled as a job of its own.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from orch.executors.base import Task
from orch.executors.batch_script import task_script
from orch.executors.job_settings import JobSettings
from orch.executors.schedulers import JobFiles, ScriptError
from orch.executors.slurm_script import resource_options
from orch.remote import quote_path

GROUP_TYPE = "orch.groups.CoScheduled"
COMPONENT = re.compile(r"ORCH-COMPONENT (\d+) (\d+)\+(\d+)")
"""What the submit prints per component after sbatch: its own job id, then J+K."""
PORT_BASE, PORT_SPAN = 30000, 20000
"""Ports given to members that declare none: in [30000, 50000), from the job id and member."""


@dataclass(frozen=True)
class CoScheduled:
    """One co-scheduled group, as the task builder gives it to each member's submit."""

    name: str
    properties: dict[str, Any]
    members: tuple[dict[str, Any], ...]
    """Per member, in the group's order: node, instance, properties, related, host, site."""
    leader: str
    """The member whose submit submits the group's job (the first in the plan's order)."""
    leader_job: str | None = None
    """The leader's newest job id (the others' submits, which come after its, take their
    component of it)."""

    def index(self, node: str) -> int:
        return next(i for i, m in enumerate(self.members) if m["node"] == node)

    def tasks(self, task: Task) -> list[Task]:
        """Each member's task, as its own submit would have it (the submitting one's
        environment: the same execution)."""
        return [
            dataclasses.replace(
                task, node=m["node"], instance=m["instance"], properties=m["properties"],
                related=m["related"], host=m["host"], site=m["site"],
            )
            for m in self.members
        ]

    def check(self, tasks: list[Task]) -> None:
        """Members must share one Slurm site (one job holds them all)."""
        sites = {t.node: getattr(t.site, "name", None) or t.host.name for t in tasks}
        logins = {t.host.key for t in tasks}
        if len(set(sites.values())) > 1 or len(logins) > 1:
            where = ", ".join(f"{node} on {site}" for node, site in sites.items())
            raise ScriptError(
                f"group {self.name}: its members must run on one site, to start together in "
                f"one job, but {where}: host them all on the same site"
            )
        scheduler = getattr(tasks[0].site, "scheduler", None) or "slurm"
        if scheduler != "slurm":
            raise ScriptError(
                f"group {self.name}: site {sites[tasks[0].node]} runs {scheduler}; co-scheduled "
                "jobs are Slurm's (a heterogeneous job, or steps of one job)"
            )
        for task in tasks:
            if task.related.get("host", {}).get("allocation_id") is not None:
                raise ScriptError(f"group {self.name}: {task.node} runs in an allocation; "
                                  "co-schedule jobs on the site itself")  # fmt: skip


def env_name(node: str) -> str:
    """``sim-a`` → ``SIM_A``: a node's name as the prefix of its variables."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", node).upper()
    return name if not name[:1].isdigit() else f"N_{name}"


def group_script(group: CoScheduled, jobs: list[JobSettings], files: list[JobFiles],
                 script_folder: str) -> str:  # fmt: skip
    """The one batch script of the group's heterogeneous job."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", group.name)
    job_name = str(group.properties.get("job_name") or group.name)
    if re.search(r"[\x00-\x1f\x7f]", job_name):
        raise ScriptError(f"group {group.name!r}: its job name {job_name!r} holds a line break or "
                          "a control character: give it on one line")  # fmt: skip
    lines = ["#!/bin/bash"]
    for k, job in enumerate(jobs):
        if k:
            lines.append("#SBATCH hetjob")
        else:
            lines += [f"#SBATCH --job-name={job_name}",
                      f"#SBATCH --chdir={script_folder}",
                      f"#SBATCH --output={script_folder}/{stem}-%j.out",
                      f"#SBATCH --error={script_folder}/{stem}-%j.err"]  # fmt: skip
        lines += [f"#SBATCH {option}" for option in resource_options(job)]
    lines += [
        f"# written by orch: deployment {jobs[0].deployment}, co-scheduled group {group.name}",
        "orch_addr() { n=$(scontrol show hostnames \"$1\" | head -n 1); "
        "a=$(scontrol show node \"$n\" -o 2>/dev/null | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p'); "
        'echo "${a:-$n}"; }',
    ]
    delimiter = f"ORCH_MEMBER_{secrets.token_hex(8)}"
    for k, (job, f) in enumerate(zip(jobs, files, strict=True)):
        port = job_port(group.members[k])
        derived = f"$(( {PORT_BASE} + (SLURM_JOB_ID * 7 + {k * 101}) % {PORT_SPAN} ))"
        prefix = quote_path(f.exit_file(""))  # <folder>/<node>-, then the component's id
        lines += [
            f'orch_id_{k}="$SLURM_JOB_ID_HET_GROUP_{k}"',
            f'orch_host_{k}=$(orch_addr "$SLURM_JOB_NODELIST_HET_GROUP_{k}")',
            f"orch_port_{k}={port if port else derived}",
            f'echo "$orch_host_{k}:$orch_port_{k}" > {prefix}"$orch_id_{k}".endpoint',
            f"(umask 077 && cat > {quote_path(f.script)} <<'{delimiter}'",
            member_script(job).rstrip("\n"),
            delimiter,
            f") && chmod 700 {quote_path(f.script)}",
        ]
    for k, (job, f) in enumerate(zip(jobs, files, strict=True)):
        peers = [f'ORCH_HOST="$orch_host_{k}"', f'ORCH_PORT="$orch_port_{k}"']
        for t, member in enumerate(group.members):
            name = env_name(member["node"])
            peers += [f'{name}_HOST="$orch_host_{t}"', f'{name}_PORT="$orch_port_{t}"',
                      f'{name}_ENDPOINT="$orch_host_{t}:$orch_port_{t}"']  # fmt: skip
        prefix = quote_path(f.exit_file(""))
        srun = " ".join(["srun", f"--het-group={k}", f"--chdir={quote_path(f.folder)}",
                         f'--output={prefix}"$orch_id_{k}".out',
                         f'--error={prefix}"$orch_id_{k}".err',
                         *(shlex.quote(o) for o in _srun_options(job)),
                         quote_path(f.script)])  # fmt: skip
        lines.append(f"( export {' '.join(peers)}; {srun}; "
                     f'echo $? > {prefix}"$orch_id_{k}".exit ) &')
    # each member's status is its exit file's: the job itself ends well once all have ended
    lines += ["wait", "exit 0"]
    return "\n".join(lines) + "\n"


def member_script(job: JobSettings) -> str:
    """What each task of a member runs: its environment, modules, then its command (started
    once per task by srun), or its script."""
    return task_script(job, "co-scheduled")


def job_port(member: dict[str, Any]) -> int | None:
    value = member["properties"].get("port")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        raise ScriptError(f"{member['node']}: port {value!r} is not a number") from None


def _srun_options(job: JobSettings) -> list[str]:
    options = [f"--mpi={job.mpi}"] if job.mpi else []
    return options + list(job.launcher_options)
