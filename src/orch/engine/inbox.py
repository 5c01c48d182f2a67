"""What reaches the scheduler's thread, in one queue: the workers' output lines ("line") and
operation ends ("done"), and stop requests from signal handlers ("signal", whether to cancel).
Nothing polls: the scheduler waits on it, at most until a job poll is due."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

Message = tuple[str, Any]


class Inbox:
    def __init__(self) -> None:
        self.queue: queue.Queue[Message] = queue.Queue()

    def put(self, kind: str, payload: Any) -> None:
        self.queue.put((kind, payload))

    def next(self, timeout: float | None) -> Message | None:
        """The next message, or None once ``timeout`` seconds passed (a job poll is due)."""
        while True:
            try:
                return self.queue.get(timeout=0.5 if timeout is None else min(timeout, 0.5))
            except queue.Empty:
                if timeout is not None:
                    return None

    def drain(self, on_signal: Callable[[bool], None]) -> None:
        """The stop requests left once nothing runs any more (lines and ends are dropped)."""
        while True:
            try:
                kind, payload = self.queue.get_nowait()
            except queue.Empty:
                return
            if kind == "signal":
                on_signal(payload)

    def wait(
        self, seconds: float, stopping: Callable[[], bool], on_signal: Callable[[bool], None]
    ) -> bool:
        """Sleep, unless the user stops the run (True then)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if stopping():
                return True
            with contextlib.suppress(queue.Empty):
                kind, payload = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                if kind == "signal":
                    on_signal(payload)
        return stopping()
