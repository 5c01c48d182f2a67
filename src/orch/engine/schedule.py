"""The ready set of a plan: which steps may start now. Pure bookkeeping over the step graph (no
store, no executor, no thread): a step is ready the moment its last dependency ended, not level
by level. A step whose dependency did not succeed is skipped, and so are, in turn, the steps
that need it; a failure handler (``on_failure_of``) is ready once the steps it handles ended,
and runs only if one of them failed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from orch.plan.steps import Plan, Step


class ReadySet:
    def __init__(self, plan: Plan, on_skip: Callable[[Step], None]):
        """``on_skip(step)`` is told of each step skipped, before the steps after it are."""
        self.plan = plan
        self.on_skip = on_skip
        self.ready: deque[str] = deque()
        """Steps that may start, in the order they became ready."""
        self.outcome: dict[str, str] = {}
        """Steps ended: ok, failed or skipped."""
        self._dependents = plan.dependents()
        self._waiting = {sid: len(s.deps) for sid, s in plan.steps.items()}
        self._watching = {sid: len(s.on_failure_of) for sid, s in plan.steps.items()}
        self._handled_failed: dict[str, bool] = {}
        """Failure handlers: whether a step they handle failed."""
        self._blocked: set[str] = set()
        """Steps a dependency of which did not succeed."""
        for sid, step in plan.steps.items():
            if not step.deps and not step.on_failure_of:
                self.ready.append(sid)

    def __bool__(self) -> bool:
        return bool(self.ready)

    def pop(self) -> str:
        return self.ready.popleft()

    def finished(self, step_id: str, outcome: str) -> None:
        """``step_id`` ended (ok, failed or skipped): the steps waiting for it may be ready."""
        self.outcome[step_id] = outcome
        for child in self._dependents[step_id]:
            step = self.plan.steps[child]
            if step_id in step.on_failure_of:
                self._watching[child] -= 1
                self._handled_failed[child] = (
                    self._handled_failed.get(child, False) or outcome == "failed"
                )
            if step_id in step.deps:
                self._waiting[child] -= 1
                if outcome != "ok":
                    self._blocked.add(child)
            if self._waiting[child] == 0 and self._watching[child] == 0:
                self._release(child)

    def left(self) -> list[str]:
        """Steps that did not end (never started, or stopped)."""
        return [s for s in self.plan.steps if s not in self.outcome]

    def _release(self, step_id: str) -> None:
        step = self.plan.steps[step_id]
        blocked = step_id in self._blocked
        if step.on_failure_of and not self._handled_failed.get(step_id, False):
            blocked = True  # a failure handler whose steps all succeeded
        if blocked:
            self.on_skip(step)
            self.finished(step_id, "skipped")
        else:
            self.ready.append(step_id)
