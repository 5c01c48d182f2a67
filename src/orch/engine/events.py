"""What the engine reports while it runs: one stream of events for the live view, the JSON
stream (``--format json``), the plain log lines and the state store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "run-start",  # data: action, workflow, steps, done (already done before this run), workers
    "step-start",  # an operation began: node, instance, step, data: interface, operation, host
    "step-end",  # data: status ok|failed|timeout|cancelled, rc, elapsed, outputs, tail
    "step-skip",  # a step that will not run because a step it needs failed: data: reason
    "state",  # an instance changed state: data: state
    "output",  # a line of an operation's output: message = line, data: stream
    "message",  # a note for the user (stopping, retrying...): message
    "run-end",  # data: status ok|failed|cancelled, counts, outputs, elapsed
]


@dataclass
class Event:
    kind: EventKind
    deployment: str
    node: str | None = None
    instance: str | None = None
    step: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if v not in (None, "", {})}


Listener = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A listener that drops everything (tests, library use)."""
