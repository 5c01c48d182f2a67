"""Jobs: what a submit or run operation reports, read with Yorc's conventions.

``submit`` reports the job's id as the output ``TOSCA_JOB_ID``; ``run`` is called again at the
node's poll interval with that id and reports ``TOSCA_JOB_STATUS``: ``COMPLETED`` ends the job,
``FAILED`` (or another end of a failed job, as schedulers name them) fails it, anything else
(``RUNNING``, ``PENDING``, ``QUEUED``...) means "ask again later".
"""

from __future__ import annotations

import re
from typing import Any, Literal

from orch.tosca.model import Node

JOB_ID = "TOSCA_JOB_ID"
JOB_STATUS = "TOSCA_JOB_STATUS"
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

_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
}  # fmt: skip
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*")

Verdict = Literal["completed", "failed", "waiting"]


def parse_duration(value: Any) -> float | None:
    """Seconds from ``5``, ``"5 s"``, ``"5s"``, ``"300ms"``, ``"1 m"``; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        return None
    unit = match.group(2).lower() or "s"
    if unit not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[unit]


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
