"""The batch script of a job, for any scheduler: the scheduler's directive lines (from the job's
settings), modules, environment, then the command (through its launcher, in an Apptainer image
when it has one) or the script body.

The script records the command's exit status in ``<output>.exit`` (an EXIT trap), so that orch
still learns how a job ended after the scheduler has forgotten it, on a site without accounting.
"""

from __future__ import annotations

import shlex

from orch.executors.job_settings import JobSettings
from orch.executors.schedulers import JobFiles, Scheduler, ScriptError
from orch.remote import module_lines

RANK_WRAPPER = (
    "/bin/sh -c 'export ORCH_RANK=\"${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}}\" "
    "ORCH_RANKS=\"${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-1}}}\"; exec \"$@\"' "
    "orch-rank"
)
"""Each task a launcher starts gets ORCH_RANK and ORCH_RANKS, whichever launcher started it
(srun, Open MPI's or MPICH's mpirun): blueprints stay the same on every scheduler."""


def batch_script(job: JobSettings, files: JobFiles, scheduler: Scheduler) -> str:
    """The whole batch script."""
    lines = ["#!/bin/bash"]
    lines += scheduler.header(job, files)
    lines += scheduler.prologue
    lines += [
        f"# written by orch: deployment {job.deployment}, node {job.node}",
        f"orch_exit_file={shlex.quote(files.exit_file(''))}\"${scheduler.job_id_variable}\".exit",
        "trap 'echo $? > \"$orch_exit_file\"' EXIT",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in job.environment.items()]
    lines += module_lines(job.modules)
    lines.append(body(job, scheduler))
    return "\n".join(lines) + "\n"


def body(job: JobSettings, scheduler: Scheduler | None) -> str:
    """What the job runs: the script property as written, else the command line (through the
    scheduler's launcher; ``exec`` of it when the tasks are started already: no scheduler)."""
    if job.script and job.command:
        raise ScriptError(f"{job.node}: give command or script, not both")
    if job.script:
        text = job.script
        return text.split("\n", 1)[1] if text.startswith("#!") and "\n" in text else text
    if not job.command:
        raise ScriptError(f"{job.node}: give command (a command line) or script (a script body)")
    launch = scheduler.launcher(job) if scheduler is not None else ["exec"]
    if launch and scheduler is not None:
        launch = [*launch, RANK_WRAPPER]
    arguments = [shlex.quote(a) for a in job.arguments]
    return " ".join([*launch, *container(job), job.command, *arguments])


def container(job: JobSettings) -> list[str]:
    """``apptainer exec ... IMAGE`` for an Apptainer job, nothing otherwise."""
    if not job.container:
        return []
    if not job.image:
        raise ScriptError(
            f"{job.node}: no image to run: set the image property (a .sif on the site) or "
            "the image requirement (a orch.nodes.ContainerImage)"
        )
    words = [job.container_runtime, "exec"]
    if job.nv:
        words.append("--nv")
    for bind in job.binds:
        words += ["--bind", shlex.quote(bind)]
    words += [shlex.quote(o) for o in job.apptainer_options]
    words.append(shlex.quote(job.image))
    return words


def task_script(job: JobSettings, kind: str, preamble: list[str] | None = None) -> str:
    """The script each task of a step runs (a held allocation's step, a co-scheduled member):
    the step started the tasks, so the command runs as is (no launcher), after the
    environment and modules; a script body runs as written."""
    lines = ["#!/bin/bash", f"# written by orch: deployment {job.deployment}, node {job.node} "
             f"({kind})", *(preamble or []),
             'export ORCH_RANK="${SLURM_PROCID:-0}" ORCH_RANKS="${SLURM_NTASKS:-1}"']  # fmt: skip
    lines += [f"export {name}={shlex.quote(value)}" for name, value in job.environment.items()]
    lines += module_lines(job.modules)
    lines.append(body(job, None))
    return "\n".join(lines) + "\n"
