"""The batch script of a Slurm job node: ``#SBATCH`` lines from its properties (with the site's
defaults), modules, environment, then the command (through its launcher, in an Apptainer image
when it has one) or the script body.

The script records the command's exit status in ``<output>.exit`` (an EXIT trap), so that orch
still learns how a job ended after Slurm has forgotten it (``MinJobAge``) on a site without
accounting.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from orch.executors.base import Task
from orch.executors.builtin import environment_lines, module_lines, safe_segment, setting
from orch.executors.jobstate import parse_duration
from orch.units import to_base_unit


class ScriptError(ValueError):
    """The node's properties cannot make a batch script (the message says which and why)."""


@dataclass(frozen=True)
class JobFiles:
    """Where a job's files are on the site; ``%j`` stands for the job id until it is known."""

    folder: str
    stem: str

    @property
    def script(self) -> str:
        return f"{self.folder}/{self.stem}.sbatch"

    def output(self, job_id: str = "%j") -> str:
        return f"{self.folder}/{self.stem}-{job_id}.out"

    def error(self, job_id: str = "%j") -> str:
        return f"{self.folder}/{self.stem}-{job_id}.err"

    def exit_file(self, job_id: str = "%j") -> str:
        """The file the script writes its exit status to (``job_id`` '' gives the prefix)."""
        if not job_id:
            return f"{self.folder}/{self.stem}-"
        return f"{self.folder}/{self.stem}-{job_id}.exit"


def job_files(task: Task, folder: str) -> JobFiles:
    return JobFiles(folder, safe_segment(task.node))


def sbatch_options(task: Task, files: JobFiles) -> list[str]:
    """The ``#SBATCH`` options, in sbatch's long form."""
    props = task.properties
    options = [
        f"--job-name={props.get('job_name') or task.node}",
        f"--chdir={files.folder}",
        f"--output={files.output()}",
        f"--error={files.error()}",
    ]
    for prop, flag in (
        ("nodes", "nodes"), ("tasks", "ntasks"), ("tasks_per_node", "ntasks-per-node"),
        ("cpus_per_task", "cpus-per-task"),
    ):  # fmt: skip
        if props.get(prop) is not None:
            options.append(f"--{flag}={int(props[prop])}")
    if props.get("memory"):
        options.append(f"--mem={_megabytes(props['memory'])}M")
    if props.get("time"):
        options.append(f"--time={_slurm_time(props['time'])}")
    for prop in ("partition", "account", "qos"):
        value = setting(task, prop)
        if value:
            options.append(f"--{prop}={value}")
    if props.get("reservation"):
        options.append(f"--reservation={props['reservation']}")
    options.extend(str(o) for o in props.get("extra_options") or [])
    return options


def batch_script(task: Task, files: JobFiles) -> str:
    """The whole batch script."""
    props = task.properties
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {option}" for option in sbatch_options(task, files)]
    lines += [
        f"# written by orch: deployment {task.deployment}, node {task.node}",
        f"orch_exit_file={shlex.quote(files.exit_file(''))}\"$SLURM_JOB_ID\".exit",
        "trap 'echo $? > \"$orch_exit_file\"' EXIT",
    ]
    lines += environment_lines(task, props.get("environment"))
    lines += module_lines(setting(task, "modules"))
    lines.append(body(task))
    return "\n".join(lines) + "\n"


def body(task: Task) -> str:
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
    return " ".join([*launcher(task), *container(task), str(command), *arguments(props)])


def arguments(props: dict[str, Any]) -> list[str]:
    return [shlex.quote(str(a)) for a in props.get("arguments") or []]


def launcher(task: Task) -> list[str]:
    props = task.properties
    kind = str(props.get("launcher") or "none")
    if kind == "none":
        return []
    words = [kind]
    if kind == "srun" and props.get("mpi"):
        words.append(f"--mpi={props['mpi']}")
    words += [shlex.quote(str(o)) for o in props.get("launcher_options") or []]
    return words


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


def _megabytes(value: Any) -> int:
    try:
        size = to_base_unit("scalar-unit.size", value) if isinstance(value, str) else value
        return max(1, math.ceil(float(size) / 1e6))
    except (ValueError, TypeError):
        raise ScriptError(f"memory '{value}' is not a size like '2 GB'") from None


def _slurm_time(value: Any) -> str:
    seconds = parse_duration(value)
    if seconds is None:
        raise ScriptError(f"time '{value}' is not a duration like '30 m'")
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00"
