"""Co-scheduled jobs (``orch.groups.CoScheduled``): the job nodes of one group start together,
as ONE Slurm job, and find each other.

A Slurm heterogeneous job, one component per member with the member's own nodes, tasks, CPUs,
memory, partition...; each member runs with ``srun --het-group=K`` on its component's nodes
and is watched, reported and cancelled through its component's own job id. On a site that
refuses heterogeneous jobs, mode ``steps``: one job on one node holding every member's tasks,
member K its step K (``srun --exact``, each step created before the next is asked for),
watched as a step (job id ``J.K``). On SGE and PBS, which have neither, the group is one
job of the members' slots summed (``plain_group_script``), member K watched as ``J.K``
(``group_members``).

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
from orch.executors.schedulers import JobFiles, Scheduler, ScriptError
from orch.executors.slurm_script import resource_options
from orch.remote import quote_path

MODES = ("heterogeneous", "steps")
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

    def scheduler(self, task: Task) -> str:
        """The site's scheduler (slurm, sge, pbs)."""
        return str(getattr(task.site, "scheduler", None) or "slurm")

    @property
    def mode(self) -> str:
        """heterogeneous (one component per member), or steps (one job, members side by
        side on one node, for sites that refuse heterogeneous jobs)."""
        mode = str(self.properties.get("mode") or "heterogeneous")
        if mode not in MODES:
            raise ScriptError(f"group {self.name}: mode {mode!r} is not one of "
                              f"{', '.join(MODES)}")  # fmt: skip
        return mode

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
    """The one batch script of the group's job: a heterogeneous job, or (mode steps) one job
    on one node whose members are its steps 0, 1, 2... in the group's order."""
    steps = group.mode == "steps"
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", group.name)
    job_name = str(group.properties.get("job_name") or group.name)
    if re.search(r"[\x00-\x1f\x7f]", job_name):
        raise ScriptError(f"group {group.name!r}: its job name {job_name!r} holds a line break or "
                          "a control character: give it on one line")  # fmt: skip
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --chdir={script_folder}",
             f"#SBATCH --output={script_folder}/{stem}-%j.out",
             f"#SBATCH --error={script_folder}/{stem}-%j.err"]  # fmt: skip
    if steps:
        lines += [f"#SBATCH {option}" for option in resource_options(side_by_side(jobs))]
    for k, job in enumerate([] if steps else jobs):
        lines += (["#SBATCH hetjob"] if k else []) + [f"#SBATCH {o}" for o in resource_options(job)]
    lines += [
        f"# written by orch: deployment {jobs[0].deployment}, co-scheduled group {group.name} "
        + ("(steps of one job)" if steps else "(a heterogeneous job)"),
        "orch_addr() { n=$(scontrol show hostnames \"$1\" | head -n 1); "
        "a=$(scontrol show node \"$n\" -o 2>/dev/null | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p'); "
        'echo "${a:-$n}"; }',
    ]
    delimiter = f"ORCH_MEMBER_{secrets.token_hex(8)}"
    for k, (job, f) in enumerate(zip(jobs, files, strict=True)):
        port = job_port(group.members[k])
        derived = f"$(( {PORT_BASE} + (SLURM_JOB_ID * 7 + {k * 101}) % {PORT_SPAN} ))"
        prefix = quote_path(f.exit_file(""))  # <folder>/<node>-, then the member's job id
        lines += [
            f'orch_id_{k}="$SLURM_JOB_ID.{k}"' if steps
            else f'orch_id_{k}="$SLURM_JOB_ID_HET_GROUP_{k}"',
            f'orch_host_{k}=$(orch_addr "$SLURM_JOB_NODELIST{"" if steps else f"_HET_GROUP_{k}"}")',
            f"orch_port_{k}={port if port else derived}",
            f'echo "$orch_host_{k}:$orch_port_{k}" > {prefix}"$orch_id_{k}".endpoint',
            f"(umask 077 && cat > {quote_path(f.script)} <<'{delimiter}'",
            member_script(job).rstrip("\n"),
            delimiter,
            f") && chmod 700 {quote_path(f.script)}",
        ]
    for k, (job, f) in enumerate(zip(jobs, files, strict=True)):
        peers = _peers(group, k)
        prefix = quote_path(f.exit_file(""))
        placement = ([f"--het-group={k}"] if not steps else
                     ["--exact", "--nodes=1", f"--ntasks={job.tasks or 1}",
                      *([f"--cpus-per-task={job.cpus_per_task}"] if job.cpus_per_task else [])])
        srun = " ".join(["srun", *placement, f"--chdir={quote_path(f.folder)}",
                         f'--output={prefix}"$orch_id_{k}".out',
                         f'--error={prefix}"$orch_id_{k}".err',
                         *(shlex.quote(o) for o in _srun_options(job)),
                         quote_path(f.script)])  # fmt: skip
        if steps:  # step k is created before step k+1 is asked for: its id is k
            token = f'{prefix}"$orch_id_{k}".started'
            peers.append(f"ORCH_STEP_TOKEN={token}")
        lines.append(f"( export {' '.join(peers)}; {srun}; "
                     f'echo $? > {prefix}"$orch_id_{k}".exit ) &')
        if steps:
            lines.append(f"orch_pid=$!; until [ -e {token} ] || ! kill -0 \"$orch_pid\" "
                         "2>/dev/null; do sleep 0.1; done")
    # each member's status is its exit file's: the job itself ends well once all have ended
    lines += ["wait", "exit 0"]
    return "\n".join(lines) + "\n"


def plain_group_script(group: CoScheduled, jobs: list[JobSettings], files: list[JobFiles],
                       script_folder: str, scheduler: Scheduler) -> str:  # fmt: skip
    """The group's one job on a scheduler without heterogeneous jobs nor steps (SGE, PBS): its
    slots summed (in the site's parallel environment), the members side by side on its first
    host, each its command once, member K watched as J.K."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", group.name)
    together = dataclasses.replace(side_by_side(jobs),
                                   job_name=str(group.properties.get("job_name") or group.name))
    lines = ["#!/bin/bash", *scheduler.header(together, JobFiles(script_folder, stem)),
             *scheduler.prologue,
             f"# written by orch: deployment {jobs[0].deployment}, co-scheduled group "
             f"{group.name} (one job, members side by side)",
             'orch_name=$(head -n 1 "${PE_HOSTFILE:-${PBS_NODEFILE:-/dev/null}}" 2>/dev/null '
             "| cut -d' ' -f1); orch_name=${orch_name:-$(hostname)}",
             'orch_addr=$(getent hosts "$orch_name" | head -n 1 | cut -d" " -f1)',
             f'orch_job="${scheduler.job_id_variable}"']  # fmt: skip
    delimiter = f"ORCH_MEMBER_{secrets.token_hex(8)}"
    for k, (job, f) in enumerate(zip(jobs, files, strict=True)):
        port = job_port(group.members[k])
        derived = f"$(( {PORT_BASE} + (${{orch_job%%.*}} * 7 + {k * 101}) % {PORT_SPAN} ))"
        lines += [
            f'orch_id_{k}="${{orch_job%%.*}}.{k}"; orch_host_{k}="${{orch_addr:-$orch_name}}"',
            f"orch_port_{k}={port if port else derived}",
            f'echo "$orch_host_{k}:$orch_port_{k}" > {quote_path(f.exit_file(""))}"$orch_id_{k}"'
            ".endpoint",
            f"(umask 077 && cat > {quote_path(f.script)} <<'{delimiter}'",
            member_script(job).rstrip("\n"), delimiter, f") && chmod 700 {quote_path(f.script)}",
        ]  # fmt: skip
    for k, f in enumerate(files):
        prefix = quote_path(f.exit_file(""))
        lines.append(f"( export {' '.join(_peers(group, k))}; cd {quote_path(f.folder)} && "
                     f'{quote_path(f.script)} > {prefix}"$orch_id_{k}".out '
                     f'2> {prefix}"$orch_id_{k}".err; echo $? > {prefix}"$orch_id_{k}".exit ) &')
    lines += ["wait", "exit 0"]
    return "\n".join(lines) + "\n"


def _peers(group: CoScheduled, k: int) -> list[str]:
    """Member K's variables: its own host and port, and every member's endpoint."""
    peers = [f'ORCH_HOST="$orch_host_{k}"', f'ORCH_PORT="$orch_port_{k}"']
    for t, member in enumerate(group.members):
        name = env_name(member["node"])
        peers += [f'{name}_HOST="$orch_host_{t}"', f'{name}_PORT="$orch_port_{t}"',
                  f'{name}_ENDPOINT="$orch_host_{t}:$orch_port_{t}"']  # fmt: skip
    return peers


def side_by_side(jobs: list[JobSettings]) -> JobSettings:
    """Mode steps: one node holding every member's tasks, the longest time, the first
    member's partition, account and qos."""
    for job in jobs:
        if job.nodes and job.nodes > 1:
            raise ScriptError(f"{job.node}: mode steps runs the members side by side on one node; "
                              f"it asks for {job.nodes} nodes: use mode heterogeneous")  # fmt: skip
    memory = [j.memory_mb for j in jobs]
    return dataclasses.replace(
        jobs[0], nodes=1, tasks=sum(j.tasks or 1 for j in jobs), tasks_per_node=None,
        cpus_per_task=max(j.cpus_per_task or 1 for j in jobs),
        memory_mb=sum(memory) if all(memory) else None,  # type: ignore[arg-type]
        time_seconds=max((j.time_seconds or 0) for j in jobs) or None,
    )  # fmt: skip


def member_script(job: JobSettings) -> str:
    """What each task of a member runs: its environment, modules, then its command (started
    once per task by srun), or its script."""
    return task_script(job, "co-scheduled", [
        # mode steps: the first task says the step exists (the next member's may be asked for)
        'if [ "${SLURM_PROCID:-0}" = 0 ] && [ -n "${ORCH_STEP_TOKEN:-}" ]; then '
        ': > "$ORCH_STEP_TOKEN"; fi',
    ])  # fmt: skip


def job_port(member: dict[str, Any]) -> int | None:
    value = member["properties"].get("port")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        raise ScriptError(f"{member['node']}: port {value!r} is not a number") from None


def _srun_options(job: JobSettings) -> list[str]:
    options = [f"--mpi={job.mpi}"] if job.mpi else []
    return options + list(job.launcher_options)
