"""What the state store hands out: one dataclass per table row, the names deployments may
have, and the file names they stand under."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orch.state.lock import StateError

RUN_ACTIONS = frozenset({"deploy", "undeploy", "run", "cancel", "update"})
JOB_RUNNING = "running"
JOB_ENDS = frozenset({"completed", "failed", "cancelled"})
RUN_ENDS = frozenset({"ok", "failed", "cancelled", "interrupted"})
OPERATION_ENDS = frozenset({"ok", "failed", "timeout", "cancelled", "interrupted"})
INITIAL_STATE = "initial"
"""The TOSCA state of an instance saved without one."""
CREATED = "created"
"""The status of a deployment just created."""

NAME_RULE = (
    "a deployment name is 1 to 128 letters (any script), digits, '_', '.' and '-', starting "
    "with a letter, a digit or '_'"
)
_NAME = re.compile(r"[^\W][\w.-]{0,127}")
"""Names are never rewritten: what the rule allows is stored and shown exactly as given."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
"""Names that are their own folder name; the others get one made from their hash."""


@dataclass
class Deployment:
    name: str
    blueprint: str
    """The blueprint path as the user gave it."""
    model: dict[str, Any]
    inputs: dict[str, Any]
    status: str
    created: float
    updated: float
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class InstanceRow:
    deployment: str
    id: str
    """e.g. 'web/0'."""
    node: str
    state: str | None = None
    """Always set when read. When saving, None keeps the stored state ('initial' for new rows)."""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRow:
    id: int
    deployment: str
    action: str
    workflow: str | None
    started: float
    ended: float | None
    status: str
    pid: int


@dataclass
class OperationRow:
    id: int
    run_id: int
    deployment: str
    step: str
    node: str
    instance: str
    interface: str
    operation: str
    host: str
    status: str
    rc: int | None
    started: float
    ended: float | None
    outputs: dict[str, Any]
    stdout_tail: list[str]
    stderr_tail: list[str]
    message: str
    attempt: int
    process: dict[str, Any] = field(default_factory=dict)
    """Where its command ran while it ran (``pgid``, ``token``, ``host``): see ``Survivor``."""


@dataclass
class JobRow:
    id: int
    deployment: str
    instance: str
    node: str
    run_id: int
    submit_op: int
    job_id: str
    """The id the submit operation gave (TOSCA_JOB_ID)."""
    host: str
    status: str
    """running, completed, failed or cancelled."""
    detail: str
    """The last TOSCA_JOB_STATUS the run operation reported."""
    submitted: float
    ended: float | None

    @property
    def active(self) -> bool:
        return self.status == JOB_RUNNING


_JOB = (
    "id, deployment, instance, node, run_id, submit_op, job_id, host, status, detail, "
    "submitted, ended"
)


@dataclass
class EventRow:
    id: int
    deployment: str
    run_id: int | None
    time: float
    kind: str
    node: str | None
    instance: str | None
    step: str | None
    message: str
    data: dict[str, Any]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def check_name(name: str) -> str:
    """``name`` if the rule allows it, else ``StateError`` quoting the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise StateError(f"invalid deployment name {shown}: {NAME_RULE}")
    return name


def folder_name(name: str) -> str:
    """The file name standing for deployment ``name`` (folders, lock files): the name itself
    when it is plain ASCII, else ``%`` and its hash, so that any name the rule allows fits a
    file system's 255 bytes and two names never share a folder ('%' is not in any name)."""
    check_name(name)
    if _PLAIN_NAME.fullmatch(name):
        return name
    return "%" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]


def is_link(key: str) -> bool:
    """Whether an instance key names a relationship instance ('a/0>b/0#req', see link_key)."""
    return ">" in key and "#" in key


_DEPLOYMENT = "name, blueprint, model, inputs, status, created, updated, outputs"
_RUN = "id, deployment, action, workflow, started, ended, status, pid"
_OPERATION = (
    "id, run_id, deployment, step, node, instance, interface, operation, host, status, rc, "
    "started, ended, outputs, stdout_tail, stderr_tail, message, attempt, process"
)
_EVENT = "id, deployment, run_id, time, kind, node, instance, step, message, data"


def _deployment(r: Sequence[Any]) -> Deployment:
    return Deployment(
        r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4], r[5], r[6], json.loads(r[7])
    )


def _operation(r: Sequence[Any]) -> OperationRow:
    return OperationRow(
        *r[:13], json.loads(r[13]), json.loads(r[14]), json.loads(r[15]), r[16], r[17],
        json.loads(r[18]),
    )


def _event(r: Sequence[Any]) -> EventRow:
    return EventRow(*r[:9], json.loads(r[9]))
