"""The engine's parts on their own: the ready set (pure bookkeeping over a plan), the signal
handlers, and the public names other modules import from ``orch.engine.runner``."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from orch.engine import interrupts
from orch.engine.schedule import ReadySet
from orch.plan.steps import Plan, Step


def plan(*steps: Step) -> Plan:
    return Plan("deploy", {}, {s.id: s for s in steps})


def step(sid: str, deps: tuple[str, ...] = (), on_failure_of: tuple[str, ...] = ()) -> Step:
    return Step(sid, "operation", "n", "n/0", "Standard", sid, deps=list(deps),
                on_failure_of=list(on_failure_of))  # fmt: skip


class Skips:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def __call__(self, step: Step) -> None:
        self.steps.append(step.id)


def drain(ready: ReadySet) -> list[str]:
    taken = []
    while ready:
        taken.append(ready.pop())
    return taken


def test_a_step_is_ready_when_its_last_dependency_succeeds() -> None:
    skips = Skips()
    ready = ReadySet(plan(step("a"), step("b"), step("c", ("a", "b")), step("d", ("c",))), skips)
    assert drain(ready) == ["a", "b"]
    ready.finished("a", "ok")
    assert not ready  # c still waits for b
    ready.finished("b", "ok")
    assert drain(ready) == ["c"]
    ready.finished("c", "ok")
    assert drain(ready) == ["d"]
    ready.finished("d", "ok")
    assert ready.left() == [] and skips.steps == []
    assert ready.outcome == {"a": "ok", "b": "ok", "c": "ok", "d": "ok"}


def test_what_needs_a_failed_step_is_skipped_in_turn() -> None:
    skips = Skips()
    ready = ReadySet(plan(step("a"), step("b", ("a",)), step("c", ("b",)), step("x")), skips)
    assert drain(ready) == ["a", "x"]
    ready.finished("a", "failed")
    assert skips.steps == ["b", "c"] and not ready
    assert ready.outcome == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert ready.left() == ["x"]


def test_a_failure_handler_runs_only_when_a_step_it_handles_failed() -> None:
    steps = (step("a"), step("b"), step("on_fail", on_failure_of=("a", "b")))
    skips = Skips()
    ready = ReadySet(plan(*steps), skips)
    drain(ready)
    ready.finished("a", "ok")
    ready.finished("b", "failed")
    assert drain(ready) == ["on_fail"] and skips.steps == []

    skips = Skips()
    ready = ReadySet(plan(*steps), skips)
    drain(ready)
    ready.finished("a", "ok")
    ready.finished("b", "ok")
    assert not ready and skips.steps == ["on_fail"]


def test_signal_handlers_stop_then_cancel_and_are_restored() -> None:
    calls: list[dict[str, Any]] = []
    stopping = threading.Event()

    def stop(**flags: Any) -> None:
        calls.append(flags)
        stopping.set()

    before = signal.getsignal(signal.SIGINT)
    previous = interrupts.handle(stop, stopping.is_set, cancel_jobs_on_interrupt=False)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: stop, the running operations go on
        os.kill(os.getpid(), signal.SIGINT)  # again: cancel them
        os.kill(os.getpid(), interrupts.CANCEL_SIGNAL)  # `orch cancel`: the jobs too
    finally:
        interrupts.restore(previous)
    assert calls == [
        {"cancel": False, "cancel_jobs": False},
        {"cancel": True, "cancel_jobs": False},
        {"cancel": True, "cancel_jobs": True},
    ]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_engine_names_other_modules_import_are_still_there() -> None:
    from orch.engine import runner

    for name in ("Engine", "EngineOptions", "EngineError", "RunSummary", "Failure", "typed"):
        assert hasattr(runner, name), name
    assert runner.typed("42", "integer") == 42
