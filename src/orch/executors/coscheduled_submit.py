"""Submitting a co-scheduled group's one heterogeneous job (``coscheduled``), for the batch
executor: the leader's submit writes and submits the job, then asks Slurm for each component's
own job id, which becomes that member's job id (watched, reported and cancelled as a job of its
own); the other members' submits, which the plan runs after the leader's, ask Slurm for their
component of the leader's job. An earlier, interrupted attempt of the leader's submit is found
again by the execution id the components carry, instead of submitting the group twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orch.executors.base import EXECUTION_AGAIN_ENV, EXECUTION_ENV, TAIL_LINES, RunContext, Task
from orch.executors.coscheduled import (
    COMPONENT,
    CoScheduled,
    group_script,
    plain_group_script,
)
from orch.executors.job_settings import JobSettings
from orch.executors.schedulers import JobFiles, JobInfo, Scheduler, scheduler_of
from orch.executors.slurm_scheduler import SLURM_SCHEDULER
from orch.remote import quote_path, safe_segment

if TYPE_CHECKING:
    from orch.executors.base import OperationResult
    from orch.executors.batch import BatchJobExecutor

Components = dict[str, tuple[str, JobFiles]]
"""Per member node: its component's job id and its files."""
COMPONENTS = "squeue -h -t all -j \"$j\" -o 'ORCH-COMPONENT %A %i'"
"""Each component of job $j: its own job id, then J+K."""


def endpoint_outputs(info: JobInfo) -> dict[str, str]:
    """The ``host`` and ``endpoint`` attributes of a job whose endpoint orch gave."""
    if not info.endpoint or ":" not in info.endpoint:
        return {}
    return {"host": info.endpoint.rsplit(":", 1)[0], "endpoint": info.endpoint}


def submit_group(executor: BatchJobExecutor, task: Task, context: RunContext,
                 group: CoScheduled) -> Components | OperationResult:  # fmt: skip
    from orch.executors.base import OperationResult
    from orch.executors.batch import site_environment

    transport = context.transport(task.host)
    tasks = group.tasks(task)
    group.check(tasks)
    site = scheduler_of(task)
    mode = group.mode if site.name == "slurm" else "side by side"
    jobs = [JobSettings.of(t) for t in tasks]
    files = [executor.files(t, transport, SLURM_SCHEDULER) for t in tasks]
    env = site_environment(task)
    execution = task.environment.get(EXECUTION_ENV, "")
    components = COMPONENTS if mode == "heterogeneous" else 'echo "$j"'
    if execution and task.environment.get(EXECUTION_AGAIN_ENV):
        found = transport.run(
            f"j=$({site.find_command(execution)} | cut -d+ -f1); "
            f'[ -n "$j" ] && {components}', env=env, timeout=task.timeout or 120,
        )  # fmt: skip
        mapped = _components(found.stdout or "", tasks, files, mode, site)
        if mapped:
            context.log("stdout", f"found group {group.name}'s job of this submit's earlier "
                        "attempt: watching it (not submitting again)")  # fmt: skip
            return mapped
    folder = files[0].folder
    script = quote_path(f"{folder}/{safe_segment(group.name)}{site.script_suffix}")
    made = " ".join(quote_path(f.folder) for f in files)
    if site.name == "slurm":
        text = group_script(group, jobs, files, folder)
        submit = ('o=$(sbatch {script}) || exit $?\necho "$o"; '
                  "j=$(printf %s \"$o\" | sed -n 's/.*Submitted batch job \\([0-9]*\\).*/\\1/p')\n"
                  f"{components}\n").replace("{script}", script)  # fmt: skip
    else:
        text = plain_group_script(group, jobs, files, folder, site)
        submit = f"{site.submit_command(script)}\n"
    command = (f"mkdir -p {made} && cd {quote_path(folder)} && "
               f"(umask 077 && rm -f -- {script} && cat > {script}) || exit 1\n{submit}")
    result = transport.run(
        command, env=env, stdin=text.encode(), timeout=task.timeout or 300,
        cancel=context.cancel, on_line=context.log,
    )  # fmt: skip
    out = (result.stdout or "").splitlines()[-TAIL_LINES:]
    err = (result.stderr or "").splitlines()[-TAIL_LINES:]
    mapped = _components(result.stdout or "", tasks, files, mode, site)
    if result.rc == 0 and mapped:
        return mapped
    last = (err or out or [""])[-1]
    why = f"exited {result.rc}" if result.rc else "printed no job id"
    kind = "a heterogeneous job" if mode == "heterogeneous" else "one job"
    return OperationResult(
        "failed", rc=result.rc, stdout_tail=out, stderr_tail=err, fixed=bool(result.rc),
        message=f"submitting group {group.name} ({kind} of "
        f"{', '.join(t.node for t in tasks)}) on {task.host.describe()} {why}"
        + (f": {last}" if last else ""),
    )  # fmt: skip


def _components(text: str, tasks: list[Task], files: list[JobFiles],
                mode: str = "heterogeneous", site: Scheduler = SLURM_SCHEDULER) -> Components:
    """``{member: (job id, files)}``: from ``ORCH-COMPONENT id J+K`` lines, each component's
    own id (empty unless every member has its component); otherwise J.K, J as the submit
    printed it (or the id found alone on a line)."""
    if mode != "heterogeneous":
        found = site.submitted_id(text) or next((w for w in text.split() if w.isdigit()), None)
        if found is None:
            return {}
        owner = found.split(".")[0]
        return {t.node: (f"{owner}.{k}", files[k]) for k, t in enumerate(tasks)}
    by_offset: dict[int, str] = {}
    for match in COMPONENT.finditer(text):
        by_offset[int(match.group(3))] = match.group(1)
    if set(by_offset) != set(range(len(tasks))):
        return {}
    return {t.node: (by_offset[k], files[k]) for k, t in enumerate(tasks)}



def component_of(executor: BatchJobExecutor, task: Task, context: RunContext,
                 group: CoScheduled) -> Components | OperationResult:  # fmt: skip
    """A member's component of the leader's newest job."""
    from orch.executors.base import OperationResult
    from orch.executors.batch import JOB_ID_FORM, site_environment

    leader_job = group.leader_job or ""
    if not JOB_ID_FORM.match(leader_job):
        return OperationResult(
            "failed", started=False,
            message=f"{task.node} starts with group {group.name}'s job, which its leader "
            f"{group.leader} has not submitted: submit it first",
        )  # fmt: skip
    transport = context.transport(task.host)
    tasks = group.tasks(task)
    files = [executor.files(t, transport, SLURM_SCHEDULER) for t in tasks]
    owner = leader_job.split("+")[0].split(".")[0]
    if group.mode == "steps" or scheduler_of(task).name != "slurm":  # J.K of the leader's J
        return _components(owner, tasks, files, "steps")
    result = transport.run(f"j={owner}; {COMPONENTS}",
                           env=site_environment(task), timeout=task.timeout or 120)  # fmt: skip
    mapped = _components(result.stdout or "", tasks, files)
    if task.node in mapped:
        return mapped
    last = ((result.stderr or "").strip().splitlines() or [""])[-1]
    return OperationResult(
        "failed", rc=result.rc,
        message=f"group {group.name}'s job {leader_job} (submitted by {group.leader}) has no "
        f"component for {task.node} on {task.host.describe()}" + (f": {last}" if last else ""),
    )  # fmt: skip
