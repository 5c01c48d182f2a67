"""Slurm's part of a batch script: the ``#SBATCH`` lines from a job's settings and how its
command starts its tasks. The rest of the script is the same on every scheduler
(``batch_script``)."""

from __future__ import annotations

import math
import shlex

from orch.executors.base import Task
from orch.executors.builtin import safe_segment
from orch.executors.job_settings import JobSettings
from orch.executors.job_settings import megabytes as megabytes  # re-exported: former home
from orch.executors.job_settings import seconds as seconds
from orch.executors.schedulers import JobFiles as JobFiles  # re-exported: former home
from orch.executors.schedulers import ScriptError as ScriptError

_megabytes = megabytes  # the name tests knew


def job_files(task: Task, folder: str, suffix: str = ".sbatch") -> JobFiles:
    return JobFiles(folder, safe_segment(task.node), suffix)


def sbatch_options(job: JobSettings, files: JobFiles) -> list[str]:
    """The ``#SBATCH`` options, in sbatch's long form."""
    options = [
        f"--job-name={job.job_name}",
        f"--chdir={files.folder}",
        f"--output={files.output()}",
        f"--error={files.error()}",
    ]
    return options + resource_options(job)


def resource_options(job: JobSettings) -> list[str]:
    """What a job asks Slurm for (and the execution it carries): sbatch's and salloc's own
    long options alike."""
    options = [f"--comment=orch:{job.execution}"] if job.execution else []
    options += task_options(job)
    for value, flag in ((job.partition, "partition"), (job.account, "account"),
                        (job.qos, "qos"), (job.reservation, "reservation")):  # fmt: skip
        if value:
            options.append(f"--{flag}={value}")
    options.extend(job.extra_options)
    return options


def task_options(job: JobSettings) -> list[str]:
    """Nodes, tasks, CPUs, memory and time: what sbatch, salloc and srun (a step) share."""
    options = []
    for value, flag in (
        (job.nodes, "nodes"), (job.tasks, "ntasks"), (job.tasks_per_node, "ntasks-per-node"),
        (job.cpus_per_task, "cpus-per-task"),
    ):  # fmt: skip
        if value is not None:
            options.append(f"--{flag}={value}")
    if job.memory_mb:
        options.append(f"--mem={job.memory_mb}M")
    if job.time_seconds:
        options.append(f"--time={_slurm_time(job.time_seconds)}")
    return options


def slurm_launcher(job: JobSettings) -> list[str]:
    if job.launcher == "none":
        return []
    kind = "srun" if job.launcher == "auto" else job.launcher
    words = [kind]
    if kind == "srun" and job.mpi:
        words.append(f"--mpi={job.mpi}")
    words += [shlex.quote(o) for o in job.launcher_options]
    return words


def _slurm_time(total: float) -> str:
    minutes = max(1, math.ceil(total / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00"
