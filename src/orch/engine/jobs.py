"""Jobs: what a submit or run operation reports, read with Yorc's conventions.

``submit`` reports the job's id as the output ``TOSCA_JOB_ID``; ``run`` is called again at the
node's poll interval with that id and reports ``TOSCA_JOB_STATUS``: ``COMPLETED`` ends the job,
``FAILED`` (or another end of a failed job, as schedulers name them) fails it, anything else
(``RUNNING``, ``PENDING``, ``QUEUED``...) means "ask again later".
"""

from __future__ import annotations

from typing import Literal

from orch.executors.jobstate import JOB_ID as JOB_ID  # re-exported: the engine's names
from orch.executors.jobstate import JOB_STATUS as JOB_STATUS
from orch.executors.jobstate import parse_duration as parse_duration
from orch.tosca.model import Node

DEFAULT_POLL_INTERVAL = 5.0
COMPLETED = frozenset({"COMPLETED", "COMPLETE", "SUCCEEDED", "SUCCESS", "DONE", "FINISHED"})
FAILED = frozenset(
    {
        "FAILED", "FAILURE", "ERROR", "CANCELLED", "CANCELED", "TIMEOUT", "NODE_FAIL",
        "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "KILLED", "ABORTED",
    }
)  # fmt: skip
POLL_PROPERTIES = ("poll_interval", "monitoring_time_interval")
"""orch's job types, then Yorc's (``"5s"``, ``"300ms"``)."""

Verdict = Literal["completed", "failed", "waiting"]


def poll_interval(node: Node, default: float) -> float:
    """The node's own interval when it sets one, else ``default`` (``--poll-interval``)."""
    for name in POLL_PROPERTIES:
        seconds = parse_duration(node.properties.get(name))
        if seconds is not None and seconds > 0:
            return seconds
    return default


def verdict(status: str) -> Verdict:
    """What a reported TOSCA_JOB_STATUS means for the step."""
    word = status.strip().upper()
    if word in COMPLETED:
        return "completed"
    if word in FAILED:
        return "failed"
    return "waiting"
