"""A batch job's settings, typed: the job node's properties with the site's defaults over the
gaps, read and checked once (sizes, durations, counts), so that the scheduler's words
(``slurm_script``, ``sge_scheduler``) and the batch script (``batch_script``) work from plain
fields instead of a TOSCA property dictionary."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from orch.executors.base import EXECUTION_ENV, Task
from orch.executors.jobstate import parse_duration
from orch.executors.schedulers import ScriptError
from orch.remote import setting, site_default
from orch.units import to_base_unit

LAUNCHERS = ("none", "auto", "srun", "mpirun")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class JobSettings:
    node: str
    deployment: str
    site: str
    """The site's name in sites.yaml (the host's name on a plain Compute), for messages."""
    job_name: str
    command: str | None = None
    arguments: tuple[str, ...] = ()
    script: str | None = None
    launcher: str = "none"
    launcher_options: tuple[str, ...] = ()
    mpi: str | None = None
    nodes: int | None = None
    tasks: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    memory_mb: int | None = None
    """Memory per node, in whole megabytes."""
    time_seconds: float | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    extra_options: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    """The site's environment, the running workflow's inputs, then the node's own over them
    (valid names only)."""
    modules: tuple[str, ...] = ()
    container: bool = False
    """An Apptainer job: the command runs in ``image``."""
    image: str | None = None
    binds: tuple[str, ...] = ()
    nv: bool = False
    apptainer_options: tuple[str, ...] = ()
    container_runtime: str = "apptainer"
    parallel_environment: str | None = None
    execution: str | None = None
    """orch's execution id of this submit (the job carries it)."""

    @property
    def slots(self) -> int:
        """Tasks x CPUs per task: what SGE counts."""
        return (self.tasks or 1) * (self.cpus_per_task or 1)

    @classmethod
    def of(cls, task: Task) -> JobSettings:
        """The task's settings; ScriptError naming the property when one cannot be read."""
        props = task.properties
        launcher = str(props.get("launcher") or "none")
        if launcher not in LAUNCHERS:
            raise ScriptError(f"{task.node}: launcher '{launcher}' is not one of "
                              f"{', '.join(LAUNCHERS)}")  # fmt: skip
        container = "binds" in props or "nv" in props or "image" in props
        image = props.get("image") or task.related.get("image", {}).get("image_path")
        runtime = str(setting(task, "container_runtime") or "apptainer")
        environment = {str(k): str(v) for k, v in (site_default(task, "environment") or {}).items()}
        # the running workflow's inputs, as its scripts get them (a secret stays out of the
        # batch script, a file on the site)
        hidden = set(task.secret_values)
        environment.update({k: v for k, v in task.workflow_inputs.items() if v not in hidden})
        environment.update({str(k): str(v) for k, v in (props.get("environment") or {}).items()})
        settings = cls(
            node=task.node,
            deployment=task.deployment,
            site=str(getattr(task.site, "name", None) or task.host.name),
            job_name=str(props.get("job_name") or task.node),
            command=_text(props.get("command")),
            arguments=_words(props.get("arguments")),
            script=_text(props.get("script")),
            launcher=launcher,
            launcher_options=_words(props.get("launcher_options")),
            mpi=_text(props.get("mpi")),
            nodes=_count(task, props, "nodes"),
            tasks=_count(task, props, "tasks"),
            tasks_per_node=_count(task, props, "tasks_per_node"),
            cpus_per_task=_count(task, props, "cpus_per_task"),
            memory_mb=megabytes(props["memory"]) if props.get("memory") else None,
            time_seconds=seconds(props["time"]) if props.get("time") else None,
            partition=_text(setting(task, "partition")),
            account=_text(setting(task, "account")),
            qos=_text(setting(task, "qos")),
            reservation=_text(props.get("reservation")),
            extra_options=_words(props.get("extra_options")),
            environment={k: v for k, v in environment.items() if _NAME.fullmatch(k)},
            modules=tuple(m for m in _words(setting(task, "modules")) if m.strip()),
            container=container,
            image=_text(image),
            binds=_words(props.get("binds")),
            nv=bool(props.get("nv")),
            apptainer_options=_words(props.get("apptainer_options")),
            container_runtime="apptainer" if runtime == "podman" else runtime,
            parallel_environment=_text(setting(task, "parallel_environment")),
            execution=task.environment.get(EXECUTION_ENV) or None,
        )
        settings.check_one_line()
        return settings

    def check_one_line(self) -> None:
        """What becomes a directive line of the script (``#SBATCH --partition=...``) holds no
        line break: one would start a line of its own, a command of the job's shell."""
        single = {"job_name": self.job_name, "partition": self.partition,
                  "account": self.account, "qos": self.qos, "reservation": self.reservation,
                  "parallel_environment": self.parallel_environment, "mpi": self.mpi}  # fmt: skip
        values = [(name, value) for name, value in single.items() if value is not None]
        values += [("extra_options", option) for option in self.extra_options]
        for name, value in values:
            if _CONTROL.search(value):
                raise ScriptError(f"{self.node}: {name} {value!r} holds a line break or a "
                                  "control character: give it on one line")  # fmt: skip


def megabytes(value: Any) -> int:
    """A size (``2 GB``, bytes) in whole megabytes, at least 1."""
    try:
        size = to_base_unit("scalar-unit.size", value) if isinstance(value, str) else value
        return max(1, math.ceil(float(size) / 1e6))
    except (ValueError, TypeError):
        raise ScriptError(f"memory '{value}' is not a size like '2 GB'") from None


def seconds(value: Any) -> float:
    """A duration (``30 m``, seconds) in seconds."""
    parsed = parse_duration(value)
    if parsed is None:
        raise ScriptError(f"time '{value}' is not a duration like '30 m'")
    return parsed


def _count(task: Task, props: dict[str, Any], name: str) -> int | None:
    value = props.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ScriptError(f"{task.node}: {name} '{value}' is not a whole number") from None
    if number < 1 or isinstance(value, bool):
        raise ScriptError(f"{task.node}: {name} must be at least 1, not {value!r}")
    return number


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _words(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)
