"""Slurm's part of a batch script: the ``#SBATCH`` lines from a job node's properties (with the
site's defaults) and how its command starts its tasks. The rest of the script is the same on
every scheduler (``batch_script``)."""

from __future__ import annotations

import math
import shlex
from typing import Any

from orch.executors.base import EXECUTION_ENV, Task
from orch.executors.builtin import safe_segment, setting
from orch.executors.jobstate import parse_duration
from orch.executors.schedulers import JobFiles as JobFiles  # re-exported: its former home
from orch.executors.schedulers import ScriptError as ScriptError
from orch.units import to_base_unit


def job_files(task: Task, folder: str, suffix: str = ".sbatch") -> JobFiles:
    return JobFiles(folder, safe_segment(task.node), suffix)


def sbatch_options(task: Task, files: JobFiles) -> list[str]:
    """The ``#SBATCH`` options, in sbatch's long form."""
    props = task.properties
    options = [
        f"--job-name={props.get('job_name') or task.node}",
        f"--chdir={files.folder}",
        f"--output={files.output()}",
        f"--error={files.error()}",
    ]
    execution = task.environment.get(EXECUTION_ENV)
    if execution:
        options.append(f"--comment=orch:{execution}")
    for prop, flag in (
        ("nodes", "nodes"), ("tasks", "ntasks"), ("tasks_per_node", "ntasks-per-node"),
        ("cpus_per_task", "cpus-per-task"),
    ):  # fmt: skip
        if props.get(prop) is not None:
            options.append(f"--{flag}={int(props[prop])}")
    if props.get("memory"):
        options.append(f"--mem={megabytes(props['memory'])}M")
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


def slurm_launcher(task: Task) -> list[str]:
    props = task.properties
    kind = str(props.get("launcher") or "none")
    if kind == "none":
        return []
    if kind == "auto":
        kind = "srun"
    words = [kind]
    if kind == "srun" and props.get("mpi"):
        words.append(f"--mpi={props['mpi']}")
    words += [shlex.quote(str(o)) for o in props.get("launcher_options") or []]
    return words


def megabytes(value: Any) -> int:
    """A size (``2 GB``, bytes) in whole megabytes, at least 1."""
    try:
        size = to_base_unit("scalar-unit.size", value) if isinstance(value, str) else value
        return max(1, math.ceil(float(size) / 1e6))
    except (ValueError, TypeError):
        raise ScriptError(f"memory '{value}' is not a size like '2 GB'") from None


_megabytes = megabytes  # the name tests knew


def seconds(value: Any) -> float:
    """A duration (``30 m``, seconds) in seconds."""
    parsed = parse_duration(value)
    if parsed is None:
        raise ScriptError(f"time '{value}' is not a duration like '30 m'")
    return parsed


def _slurm_time(value: Any) -> str:
    minutes = max(1, math.ceil(seconds(value) / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00"
