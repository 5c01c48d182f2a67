"""The batch script of a job node, for any scheduler: the scheduler's directive lines (from the
node's properties and the site's defaults), modules, environment, then the command (through its
launcher, in an Apptainer image when it has one) or the script body.

The script records the command's exit status in ``<output>.exit`` (an EXIT trap), so that orch
still learns how a job ended after the scheduler has forgotten it, on a site without accounting.
"""

from __future__ import annotations

import shlex
from typing import Any

from orch.executors.base import Task
from orch.executors.builtin import environment_lines, module_lines, setting
from orch.executors.schedulers import JobFiles, Scheduler, ScriptError

RANK_WRAPPER = (
    "/bin/sh -c 'export ORCH_RANK=\"${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}}\" "
    "ORCH_RANKS=\"${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-1}}}\"; exec \"$@\"' "
    "orch-rank"
)
"""Each task a launcher starts gets ORCH_RANK and ORCH_RANKS, whichever launcher started it
(srun, Open MPI's or MPICH's mpirun): blueprints stay the same on every scheduler."""


def batch_script(task: Task, files: JobFiles, scheduler: Scheduler) -> str:
    """The whole batch script."""
    props = task.properties
    lines = ["#!/bin/bash"]
    lines += scheduler.header(task, files)
    lines += scheduler.prologue
    lines += [
        f"# written by orch: deployment {task.deployment}, node {task.node}",
        f"orch_exit_file={shlex.quote(files.exit_file(''))}\"${scheduler.job_id_variable}\".exit",
        "trap 'echo $? > \"$orch_exit_file\"' EXIT",
    ]
    lines += environment_lines(task, props.get("environment"))
    lines += module_lines(setting(task, "modules"))
    lines.append(body(task, scheduler))
    return "\n".join(lines) + "\n"


def body(task: Task, scheduler: Scheduler) -> str:
    """What the job runs: the script property as written, else the command line."""
    props = task.properties
    script = props.get("script")
    command = props.get("command")
    if script and command:
        raise ScriptError(f"{task.node}: give command or script, not both")
    if script:
        text = str(script)
        return text.split("\n", 1)[1] if text.startswith("#!") and "\n" in text else text
    if not command:
        raise ScriptError(f"{task.node}: give command (a command line) or script (a script body)")
    launch = scheduler.launcher(task)
    if launch:
        launch = [*launch, RANK_WRAPPER]
    return " ".join([*launch, *container(task), str(command), *arguments(props)])


def arguments(props: dict[str, Any]) -> list[str]:
    return [shlex.quote(str(a)) for a in props.get("arguments") or []]


def container(task: Task) -> list[str]:
    """``apptainer exec ... IMAGE`` for an Apptainer job, nothing otherwise."""
    props = task.properties
    if not ("binds" in props or "nv" in props or "image" in props):
        return []
    image = props.get("image") or task.related.get("image", {}).get("image_path")
    if not image:
        raise ScriptError(
            f"{task.node}: no image to run: set the image property (a .sif on the site) or "
            "the image requirement (a orch.nodes.ContainerImage)"
        )
    runtime = setting(task, "container_runtime", "container_runtime") or "apptainer"
    runtime = "apptainer" if runtime == "podman" else str(runtime)
    words = [runtime, "exec"]
    if props.get("nv"):
        words.append("--nv")
    for bind in props.get("binds") or []:
        words += ["--bind", shlex.quote(str(bind))]
    words += [shlex.quote(str(o)) for o in props.get("apptainer_options") or []]
    words.append(shlex.quote(str(image)))
    return words
