"""What the engine's parts share about a run: its options, the operations running, the failures
and the summary it returns. Data only (``orch.engine.runner`` re-exports the public names)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from orch.engine import jobs
from orch.executors.base import Executor, Task
from orch.plan.steps import Step
from orch.state import JobRow
from orch.tosca.model import Model, Operation
from orch.transport.base import HostKeyPolicy


class EngineError(Exception):
    """The plan cannot start (no executor for an implementation, ...)."""


@dataclass
class EngineOptions:
    workers: int = 4
    fail_fast: bool = False
    default_timeout: float | None = None
    remote_work_root: str = ".orch-work"
    local_work_root: str | None = None
    """Folder for local operations' work dirs (default: the deployment's state folder)."""
    host_keys: HostKeyPolicy = field(default_factory=HostKeyPolicy)
    retries_on_drop: int = 2
    """How often an operation whose command never started (connection lost) is retried."""
    secret_values: tuple[str, ...] = ()
    poll_interval: float = jobs.DEFAULT_POLL_INTERVAL
    """Seconds between two calls of a job's run operation, for nodes that set none."""
    cancel_jobs_on_interrupt: bool = False
    """Ctrl-C also asks for the running jobs to be cancelled (see ``jobs_to_cancel``)."""
    force_rebuild: bool = False
    """Build container images even when an identical one exists (``--force-rebuild``)."""
    survivors: str = "wait"
    """What to do with processes an interrupted run left running: wait for them, or stop."""
    registry: str | None = None
    """``--registry``: eFlows4HPC workflow registry of image recipes (folder or git URL)."""
    environment_sites: dict[str, str] = field(default_factory=dict)
    """``--site``: execution environment node -> site of sites.yaml ('' for every one)."""


@dataclass
class Failure:
    step: str
    title: str
    node: str
    instance: str
    operation: str
    host: str
    status: str
    rc: int | None
    message: str
    tail: list[str]


@dataclass
class RunSummary:
    status: str
    """ok, failed or cancelled."""
    run_id: int
    ran: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    done_before: int = 0
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0
    connections: int = 0


@dataclass
class Running:
    """An operation started and not recorded yet (a job watch between two polls included)."""

    step: Step
    op_id: int
    task: Task
    executor: Executor
    operation: Operation
    attempt: int
    started: float
    cancel: threading.Event
    job: JobRow | None = None
    """The job a run (watch) or cancel operation is about."""
    polls: int = 0
    due: float | None = None
    """When the current poll round of a job watched in rounds began."""
    started_at: float = field(default_factory=time.time)
    """When it started, as ``time.time()`` (for its records)."""


def operation_of(model: Model, step: Step) -> Operation | None:
    """The operation a step runs: its node's, or its relationship's (on the source's
    requirement); None for a step without one."""
    node = model.nodes[step.node]
    if step.link is not None:
        source = model.nodes[step.link.source.rsplit("/", 1)[0]]
        requirement = source.requirements[step.link.requirement]
        for operations in requirement.interfaces.values():
            if step.operation in operations:
                return operations[step.operation]
        return None
    return node.operation(step.interface or "", step.operation or "")


def operation_named(model: Model, step: Step, name: str) -> Operation | None:
    """Another operation of the step's node and interface (a submit's ``run``...)."""
    return model.nodes[step.node].operation(step.interface or "", name)
