"""Runs a Plan: ready-set scheduling over the step graph with bounded workers.

A step starts the moment its last dependency succeeds (not level by level, and nothing polls).
One thread (the caller's) owns the state store and the listener; worker threads only run
executors and hand results back through a queue. Every finished step is written to the store
before anything depends on it, so a ``kill -9`` at any moment loses at most the operations that
were running, which the next run executes again.

The engine's parts: ``schedule`` (which steps are ready), ``recorder`` (what is written: store,
events, each operation's records), ``poller`` (job watches between polls), ``worker`` (one
operation in a worker thread), ``inbox`` (what reaches the scheduler's thread), ``preflight``
(checks before anything runs), ``interrupts`` (signals), ``tasks`` (a step's Task) and ``runs``
(the data they share).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orch.engine import interrupts, preflight, survivors
from orch.engine.evaluate import EvaluationError
from orch.engine.events import Event, Listener, ignore
from orch.engine.hosts import host_for
from orch.engine.inbox import Inbox
from orch.engine.poller import Poller
from orch.engine.recorder import Recorder, typed
from orch.engine.runs import (
    EngineError,
    EngineOptions,
    Failure,
    Running,
    RunSummary,
    operation_of,
)
from orch.engine.schedule import ReadySet
from orch.engine.tasks import TaskBuilder
from orch.engine.worker import Worker
from orch.executors.base import (
    EXECUTION_AGAIN_ENV,
    EXECUTION_ENV,
    Executor,
)
from orch.plan.steps import Plan, Step
from orch.state import JobRow, Store
from orch.tosca.model import Model

__all__ = [
    "Engine", "EngineError", "EngineOptions", "Failure", "RunSummary", "typed",
]  # fmt: skip


class Engine:
    def __init__(
        self,
        store: Store,
        deployment: str,
        model: Model,
        inputs: dict[str, Any],
        executors: list[Executor],
        options: EngineOptions | None = None,
        listener: Listener = ignore,
    ):
        self.store = store
        self.name = deployment
        self.model = model
        self.inputs = inputs
        self.executors = executors
        self.options = options or EngineOptions()
        self.listener = listener
        self._inbox = Inbox()
        self._stopping = False
        self._cancelled = False
        self._running: dict[str, Running] = {}
        self.recorder = Recorder(store, deployment, model, self.options, listener)
        self.poller = Poller(self.recorder, self.options, self._running)
        self.jobs_to_cancel = False
        """Set by ``orch cancel`` (SIGUSR1) or Ctrl-C with cancel_jobs_on_interrupt: the caller
        cancels the deployment's running jobs once this run has stopped."""

    # ------------------------------------------------------------------ public
    def run(
        self,
        plan: Plan,
        *,
        action: str,
        workflow: str | None = None,
        workflow_inputs: dict[str, Any] | None = None,
    ) -> RunSummary:
        self.plan = plan
        self.recorder.plan = plan
        self.recorder.ended_by_submit = {}
        self.workflow_inputs = workflow_inputs or {}
        self._load_state(plan)
        self.recorder.bindings = preflight.check(
            plan, self.model, self.evaluator, self.executors, self.done,
            self.options.environment_sites,
        )  # fmt: skip
        run_id = self.store.begin_run(self.name, action, workflow)
        self.run_id = run_id
        self.recorder.run_id = run_id
        summary = RunSummary("ok", run_id)
        started = time.monotonic()
        previous = interrupts.handle(
            self.stop, lambda: self._stopping, self.options.cancel_jobs_on_interrupt
        )
        if interrupts.take():
            self.stop(cancel=True, cancel_jobs=True)
        from orch.transport.ssh import TransportPool

        self.pool = TransportPool(self.options.host_keys)
        self.worker = Worker(self.store, self.name, self.options, self.pool.get, self._inbox)
        try:
            if self._settle_survivors():
                self._schedule(plan, summary)
            else:
                self._left = list(plan.steps)
        except BaseException:
            with contextlib.suppress(Exception):  # the state may be what failed
                self.store.end_run(run_id, "failed")
            raise
        finally:
            interrupts.restore(previous)
            summary.connections = self.pool.connections_opened
            self.pool.close_all()
        summary.elapsed = time.monotonic() - started
        if self._cancelled or (self._stopping and summary.failed == 0 and self._left):
            summary.status = "cancelled"
        elif summary.failed or summary.skipped:
            summary.status = "failed"
        self.store.end_run(run_id, summary.status)
        self.recorder.emit(
            Event(
                "run-end",
                self.name,
                data={
                    "status": summary.status,
                    "ran": summary.ran,
                    "succeeded": summary.succeeded,
                    "failed": summary.failed,
                    "skipped": summary.skipped,
                    "done_before": summary.done_before,
                    "elapsed": round(summary.elapsed, 3),
                },
            ),
            store=True,
        )
        return summary

    def outputs(self) -> dict[str, Any]:
        """The blueprint's outputs, evaluated now; a value that cannot be evaluated is None."""
        return self.evaluator.outputs_of(self.model)

    def stop(self, *, cancel: bool = False, cancel_jobs: bool = False) -> None:
        """Start no new step; with ``cancel``, also stop the running ones now; with
        ``cancel_jobs``, the caller then cancels the running jobs.

        Safe to call from a signal handler: it only sets flags and wakes the scheduler, which
        tells the listener."""
        first = not self._stopping
        self._stopping = True
        self.jobs_to_cancel = self.jobs_to_cancel or cancel_jobs
        if cancel:
            self._cancelled = True
            for running in list(self._running.values()):
                running.cancel.set()
        if first or cancel:
            self._inbox.put("signal", cancel)

    # ------------------------------------------------------------------ state
    def _load_state(self, plan: Plan) -> None:
        self.done = self.recorder.load(plan, self.inputs)
        self.states = self.recorder.states
        self.evaluator = self.recorder.evaluator

    # ------------------------------------------------------------------ survivors
    def _settle_survivors(self) -> bool:
        """Before anything runs: what operations interrupted by a crash left running is waited
        for (or stopped), so that no operation runs twice at once. False when the user
        stopped the run while waiting."""
        return survivors.settle(
            self.store, self.name, lambda instance: self.pool.get(host_for(self.evaluator,
            instance)), self.options.survivors, self._note,
            lambda seconds: self._inbox.wait(seconds, lambda: self._stopping, self._announce_stop),
        )  # fmt: skip

    def _note(self, message: str) -> None:
        self.recorder.emit(Event("message", self.name, message=message), store=True)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, plan: Plan, summary: RunSummary) -> None:
        record = self.recorder

        def skipped(step: Step) -> None:
            summary.skipped += 1 if step.on_failure_of == [] else 0
            record.emit(
                record.event(
                    "step-skip", step, step.title, {"reason": "a step it needs did not succeed"}
                )
            )

        steps = ReadySet(plan, on_skip=skipped)
        self.outcome = steps.outcome
        record.emit(
            Event(
                "run-start",
                self.name,
                data={
                    "action": plan.kind,
                    "steps": len(plan.steps),
                    "operations": len(plan.operations()),
                    "done": len([s for s in plan.steps if s in self.done]),
                    "workers": self.options.workers,
                },
            ),
            store=True,
        )

        def failed_to_start(step_id: str, failure: Failure) -> None:
            summary.ran += 1
            summary.failed += 1
            summary.failures.append(failure)
            steps.finished(step_id, "failed")
            if self.options.fail_fast:
                self.stop()

        pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers))
        try:
            while steps or self._running:
                while steps and self.poller.active() < self.options.workers:
                    step_id = steps.pop()
                    if self._stopping:
                        continue
                    step = plan.steps[step_id]
                    if step_id in self.done:
                        summary.done_before += 1
                        steps.finished(step_id, "ok")
                        continue
                    operation = operation_of(self.model, step)
                    job = None
                    if step.job in ("run", "cancel"):
                        job = self.store.active_job(self.name, step.instance)
                    if step.job == "run" and job is None and operation is not None:
                        message = f"no running job of {step.instance} to watch: submit it first"
                        failed_to_start(step_id, record.fail_before_start(step, message))
                        continue
                    if (
                        step.kind == "state"
                        or (step.job == "cancel" and job is None)
                        or operation is None
                        or operation.implementation is None
                    ):
                        record.state_step(step)
                        steps.finished(step_id, "ok")
                        continue
                    outcome = self._start(step, pool, attempt=1, job=job)
                    if outcome is not None:  # could not even start (evaluation error)
                        failed_to_start(step_id, outcome)
                if self._stopping and self.poller.sleeping:
                    self.poller.leave_jobs_running()
                if not self._running:
                    if self._stopping:
                        self._inbox.drain(self._announce_stop)
                        break
                    continue
                message = self._inbox.next(self.poller.next_poll())
                if message is None:
                    self.poller.poll_due(lambda running: self._submit(pool, running))
                    continue
                kind, payload = message
                if kind == "line":
                    step_id, stream, line = payload
                    running = self._running.get(step_id)
                    if running is not None:
                        record.emit(record.event("output", running.step, line, {"stream": stream}))
                    continue
                if kind == "signal":
                    self._announce_stop(payload)
                    continue
                step_id, result = payload
                running = self._running[step_id]
                if running.step.job == "run" and result.ok:
                    result = self.poller.watched(running, result)
                    if result is None:  # still running: poll again later
                        continue
                del self._running[step_id]
                if (
                    not result.ok
                    and not result.started
                    and not result.fixed  # bad input: another attempt would say the same
                    and running.attempt <= self.options.retries_on_drop
                    and not self._stopping
                ):
                    record.record(running, result)
                    retry = (
                        f"{running.step.title}: {result.message}; "
                        f"retrying on a new connection (attempt {running.attempt + 1})"
                    )
                    record.emit(record.event("message", running.step, retry, {}), store=True)
                    self._start(running.step, pool, attempt=running.attempt + 1, job=running.job)
                    continue
                summary.ran += 1
                failure = record.record(running, result)
                if result.ok:
                    summary.succeeded += 1
                    steps.finished(step_id, "ok")
                else:
                    summary.failed += 1
                    if failure is not None:
                        summary.failures.append(failure)
                    steps.finished(step_id, "failed")
                    if self.options.fail_fast:
                        self.stop()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        # steps never started are simply not done: resume runs them
        self._left = steps.left()

    def _announce_stop(self, cancelling: bool) -> None:
        count = len(self._running)
        message = (
            f"cancelling {count} running operation(s)"
            if cancelling
            else f"stopping: waiting for {count} running operation(s) "
            "(interrupt again to cancel them)"
        )
        self.recorder.emit(Event("message", self.name, message=message), store=True)

    # ------------------------------------------------------------------ one step
    def _start(
        self, step: Step, pool: ThreadPoolExecutor, attempt: int, job: JobRow | None = None
    ) -> Failure | None:
        record = self.recorder
        operation = operation_of(self.model, step)
        assert operation is not None and operation.implementation is not None
        try:
            task = TaskBuilder(
                self.name, self.model, self.plan, self.evaluator, self.store, self.options
            ).task(step, operation, self.workflow_inputs, job)
        except EvaluationError as exc:
            return record.fail_before_start(step, f"cannot evaluate the inputs: {exc}", attempt)
        executor = preflight.executor_for(self.executors, operation.implementation)
        assert executor is not None
        token = secrets.token_hex(8)
        task.environment[survivors.ENV] = token  # inherited by all the command starts
        process = {"token": token, "host_instance": step.instance}
        if step.job == "submit" or step.operation in getattr(executor, "tracks_executions", ()):
            # the job carries it (name, comment, id file): a submit that was interrupted after
            # the scheduler took the job finds that job again instead of submitting it twice
            # (so does what an executor asks the scheduler for in other operations: an
            # allocation's create)
            process["execution"], again = self._execution_id(step)
            task.environment[EXECUTION_ENV] = process["execution"]
            if again:
                task.environment[EXECUTION_AGAIN_ENV] = "1"
        op_id = record.begin(step, task.host.describe(), attempt, process)
        if step.state_before is not None and step.link is None:
            self.store.update_instances(
                self.name, {step.instance: record.state_update(step.instance, step.state_before)}
            )
            record.emit_state(step, step.state_before)
        cancel = threading.Event()
        running = Running(
            step, op_id, task, executor, operation, attempt, time.monotonic(), cancel, job
        )
        self._running[step.id] = running
        record.keep_records(step, op_id, attempt, task.host.describe(), running=running)
        record.emit(
            record.event(
                "step-start",
                step,
                step.title,
                {
                    "interface": step.interface,
                    "operation": step.operation,
                    "host": task.host.describe(),
                    "attempt": attempt,
                    "operation_id": op_id,
                },
            ),
            store=True,
        )
        if step.job == "run" and self.poller.first_round(running):
            return None  # first poll: next round
        self._submit(pool, running)
        return None

    def _execution_id(self, step: Step) -> tuple[str, bool]:
        """The id of this submit's execution, and whether an attempt had it before: the one its
        last attempt had when that attempt did not succeed (it may have reached the scheduler),
        else a new one."""
        op = self.store.last_operation(self.name, step.id, step.instance)
        previous = op.process.get("execution") if op is not None else None
        if op is not None and op.status != "ok" and previous:
            return str(previous), True
        return secrets.token_hex(8), False

    def _submit(self, pool: ThreadPoolExecutor, running: Running) -> None:
        """A worker thread runs the operation (or polls its job once)."""
        pool.submit(self.worker.work, running, self.store.log_path(self.name, running.op_id))


Callback = Callable[[Event], None]
