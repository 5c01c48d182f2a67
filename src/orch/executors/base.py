"""The contract between the engine and every executor.

An executor never sees the parser's structures: it gets plain values (``Task``), a place to run
commands (``RunContext.transport``) and returns what happened (``OperationResult``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol, runtime_checkable

from orch.transport.base import Host as Host  # re-exported: executors' tasks name hosts
from orch.transport.base import Transport

OperationStatus = Literal["ok", "failed", "timeout", "cancelled"]

TAIL_LINES = 20
"""How many last lines of stdout/stderr an operation record keeps."""

EXECUTION_ENV = "ORCH_EXECUTION"
"""A job submit's execution id, the same for every attempt of one submit until one succeeds:
the job carries it (its comment or context, and a file beside it), so that an attempt that was
interrupted after the scheduler took the job finds that job again instead of submitting twice."""
EXECUTION_AGAIN_ENV = "ORCH_EXECUTION_AGAIN"
"""Set ("1") when an earlier attempt of the submit had the same execution id: the executor
looks for that attempt's job before submitting."""


@dataclass(frozen=True)
class Artifact:
    """A file the operation needs, copied into its work directory under ``name``."""

    name: str
    """Path relative to the operation's work directory (the blueprint-relative path)."""
    local_path: Path
    """Where the file is on the orchestrator's machine (a snapshot copy, never the user's)."""


@dataclass(frozen=True)
class Task:
    """One operation to run, with everything already evaluated."""

    deployment: str
    node: str
    instance: str
    """Instance id, e.g. 'web/0'."""
    interface: str
    """Short interface name, e.g. 'Standard', 'Configure'."""
    operation: str
    implementation: Artifact
    dependencies: tuple[Artifact, ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)
    """Operation inputs, already evaluated, as values (lists stay lists): each executor renders
    them for its medium (``as_text`` for environment variables, JSON for Ansible extra vars)."""
    environment: dict[str, str] = field(default_factory=dict)
    """orch's own variables: NODE, INSTANCE, HOST, DEPLOYMENT_ID, SOURCE_*, TARGET_*."""
    workflow_inputs: dict[str, str] = field(default_factory=dict)
    """The inputs of the workflow running the operation, as text (those with a shell
    variable's name; also in ``environment``): what a batch job exports."""
    host: Host = Host("localhost")  # noqa: RUF009 (a frozen dataclass: shared safely)
    timeout: float | None = None
    """Seconds; None = no limit."""
    secret_values: tuple[str, ...] = field(default=(), repr=False)
    """Values that must never appear in logs or outputs (masked as '*****')."""
    properties: dict[str, Any] = field(default_factory=dict)
    """Built-in implementations only: the node's properties, evaluated (what a Slurm job or an
    image is made of lives there, not in operation inputs)."""
    related: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Built-in implementations only: per requirement name, the target node's properties with
    its live attributes over them (e.g. the image a job runs, the site data goes to)."""
    base_dir: str | None = None
    """Built-in implementations only: the blueprint's folder (relative local paths start there)."""
    site: Any = None
    """The ``orch.sites.config.Site`` the operation's host is, when it is a site of sites.yaml
    (its partition, account, modules, work folder, environment are the jobs' defaults)."""
    group: Any = None
    """Built-in implementations only: the ``executors.coscheduled.CoScheduled`` group the node
    is a member of, if any (its members start together, in one job)."""

    @property
    def label(self) -> str:
        return f"{self.instance} {self.interface}.{self.operation}"


@dataclass
class OperationResult:
    """What running one operation did; ``status`` says whether it succeeded."""

    status: OperationStatus
    rc: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    message: str = ""
    """One line for the user: why it failed (empty when ok)."""
    started: bool = True
    """False when the command never started on the host (safe to retry on a new connection)."""
    fixed: bool = False
    """The failure is in what the operation was given (a bad property, an option the site
    cannot honour): another attempt would fail the same way, so it is never retried."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def escaping_artifact(task: Task) -> str | None:
    """The name of the first implementation or dependency that is not a relative path inside
    the operation's folder (absolute, or with ``..``), if any: copying it there would escape."""
    for artifact in (task.implementation, *task.dependencies):
        parts = PurePosixPath(artifact.name).parts
        if not parts or parts[0] == "/" or ".." in parts:
            return artifact.name
    return None


def as_text(value: Any) -> str:
    """A value as an environment variable holds it: JSON for structures, true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


LogSink = Callable[[str, str], None]
"""``sink(stream, line)``: a line of an operation's output, stream 'stdout' or 'stderr'."""


class TransportProvider(Protocol):
    def __call__(self, host: Host) -> Transport: ...


@dataclass
class RunContext:
    """What the engine lends an executor for one operation."""

    transport: TransportProvider
    """The pooled transport for a host (one connection per host per run)."""
    cancel: threading.Event
    """Set when the operation must stop now (timeout, or the user cancelled)."""
    log: LogSink
    """Streams output lines to the operation's log file as they come."""
    work_root: str = ".orch-work"
    """Folder (relative to the remote user's home, or absolute) for per-operation work dirs."""
    artifacts_dir: str | None = None
    """A folder of this machine kept for the operation's records (e.g. ansible-runner's private
    data dir with its events, stdout and rc); None: the executor uses a temporary one."""
    known_hosts: list[str] = field(default_factory=list)
    """known_hosts files that executors running their own ssh (Ansible) check host keys
    against; empty: ~/.ssh/known_hosts."""
    poll_due: float | None = None
    """For a job's run operation polled in rounds: when (``time.monotonic``) this round began;
    executors that batch one status query per site and round share results taken after it."""
    force_rebuild: bool = False
    """``orch deploy --force-rebuild``: build images even when an identical one exists."""


class Executor(Protocol):
    """One implementation kind (script, ansible, slurm...)."""

    name: str
    kinds: str
    """What it runs, for messages: e.g. '.sh, .bash and .py scripts'."""

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        """Whether this executor runs this implementation file / artifact type."""
        ...

    def run(self, task: Task, context: RunContext) -> OperationResult: ...


@runtime_checkable
class JobExecutor(Executor, Protocol):
    """An executor of batch jobs (TOSCA's Runnable: submit, run, cancel), whatever the scheduler.

    ``submit`` returns the job's id as the output ``TOSCA_JOB_ID``; ``check_active`` answers for
    all the jobs of one site with ONE status query; ``cancel`` ends a job. The engine calls
    ``run`` for each Runnable operation (``run`` is one poll) and ``expect`` when a job's watch
    begins, so that the next round's query includes it; it aligns the polls of all jobs on
    common rounds (``polls_in_rounds``)."""

    polls_in_rounds: bool

    def submit(self, task: Task, context: RunContext) -> OperationResult: ...

    def check_active(self, tasks: list[Task], context: RunContext) -> dict[str, OperationResult]:
        """Each job's report (keyed by job id), from one status query of their site."""
        ...

    def cancel(self, task: Task, context: RunContext) -> OperationResult: ...

    def expect(self, task: Task) -> None: ...


@runtime_checkable
class Preflighted(Protocol):
    """An executor that can tell, before anything runs, that it will refuse a node (a DLS type
    or DAG orch does not serve): the engine's pre-flight asks it."""

    def unsupported(self, type_names: list[str], properties: dict[str, Any]) -> str | None:
        """Why the node (its types, nearest first, and evaluated properties) cannot be served;
        None when it can."""
        ...


def polls_in_rounds(executor: Executor) -> bool:
    """Whether the engine should align this executor's job polls on common rounds (so that one
    status query per site and round answers for every job), first poll included."""
    return isinstance(executor, JobExecutor) and executor.polls_in_rounds
