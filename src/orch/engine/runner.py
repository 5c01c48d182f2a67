"""Runs a Plan: ready-set scheduling over the step graph with bounded workers.

A step starts the moment its last dependency succeeds (not level by level, and nothing polls).
One thread (the caller's) owns the state store and the listener; worker threads only run
executors and hand results back through a queue. Every finished step is written to the store
before anything depends on it, so a ``kill -9`` at any moment loses at most the operations that
were running, which the next run executes again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.engine import artifacts, interrupts, jobs, survivors
from orch.engine.environments import (
    SITE_ATTRIBUTE,
    UnboundEnvironment,
    choose_site,
    is_environment,
    site_attributes,
    unknown_environments,
)
from orch.engine.evaluate import EvaluationError, Scope, link_key, stored_evaluator
from orch.engine.events import Event, Listener, ignore
from orch.engine.hosts import host_for
from orch.engine.interrupts import CANCEL_SIGNAL
from orch.engine.tasks import TaskBuilder
from orch.executors.base import (
    EXECUTION_AGAIN_ENV,
    EXECUTION_ENV,
    Executor,
    OperationResult,
    RunContext,
    Task,
    polls_in_rounds,
)
from orch.executors.masking import Masker
from orch.plan.steps import Plan, Step
from orch.state import JobRow, Store
from orch.tosca.model import FileRef, Model, Operation
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
class _Running:
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
        self._done: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stopping = False
        self._cancelled = False
        self._running: dict[str, _Running] = {}
        self._sleeping: dict[str, float] = {}
        """Running job watches between two polls: step -> when to poll again (monotonic)."""
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
        self._ended_by_submit = {}
        self.workflow_inputs = workflow_inputs or {}
        self._load_state(plan)
        self._preflight(plan)
        run_id = self.store.begin_run(self.name, action, workflow)
        self.run_id = run_id
        summary = RunSummary("ok", run_id)
        started = time.monotonic()
        previous = self._install_signals()
        if interrupts.take():
            self.stop(cancel=True, cancel_jobs=True)
        from orch.transport.ssh import TransportPool

        self.pool = TransportPool(self.options.host_keys)
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
            self._restore_signals(previous)
            summary.connections = self.pool.connections_opened
            self.pool.close_all()
        summary.elapsed = time.monotonic() - started
        if self._cancelled or (self._stopping and summary.failed == 0 and self._left):
            summary.status = "cancelled"
        elif summary.failed or summary.skipped:
            summary.status = "failed"
        self.store.end_run(run_id, summary.status)
        self._emit(
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
            self._done.put(("signal", cancel))

    # ------------------------------------------------------------------ state
    def _load_state(self, plan: Plan) -> None:
        rows = {row.id: row for row in self.store.instances(self.name)}
        new = [
            _instance_row(self.name, i.id, i.node)
            for i in plan.instances.values()
            if i.id not in rows
        ]
        if new:
            self.store.save_instances(self.name, new)
            rows.update({row.id: row for row in new})
        self.states = {iid: row.state for iid, row in rows.items()}
        self.evaluator = stored_evaluator(
            self.store, self.name, self.model, plan.instances, self.inputs, rows.values()
        )
        self.done = self.store.done_steps(self.name, plan.kind)
        interrupted = self.store.interrupt_stale(self.name)
        for op in interrupted:
            self._emit(
                Event(
                    "message",
                    self.name,
                    node=op.node,
                    instance=op.instance,
                    step=op.step,
                    message=f"{op.instance} {op.interface}.{op.operation} was interrupted "
                    "by the previous run: it runs again",
                )
            )
            self._close_records(op)

    def _close_records(self, op: Any) -> None:
        """The records of an operation the previous run left running (it was killed): its
        status is interrupted."""
        folder = self.store.artifacts_dir(self.name, op.id)
        record = artifacts.read_task(folder) or {
            "deployment": self.name, "run_id": op.run_id, "operation_id": op.id,
            "step": op.step, "node": op.node, "instance": op.instance,
            "interface": op.interface, "operation": op.operation, "host": op.host,
            "attempt": op.attempt, "started": artifacts.when(op.started),
        }  # fmt: skip
        message = "interrupted: the orch process stopped during the operation"
        record.update(status="interrupted", rc=None, message=message,
                      ended=artifacts.when(op.ended or time.time()))  # fmt: skip
        with contextlib.suppress(OSError):
            artifacts.finish(folder, rc=None, status="interrupted", record=record)

    def _preflight(self, plan: Plan) -> None:
        problems = self._bind_environments(plan)
        for step in plan.operations():
            if step.id in self.done:
                continue
            operation = self._operation(step)
            if operation is None or operation.implementation is None:
                continue
            executor = self._executor_for(operation.implementation)
            refusal = self._refusal(executor, step) if executor is not None else None
            if refusal:
                problems.append(f"{step.instance} {step.interface}.{step.operation}: {refusal}")
            if executor is None:
                supported = "; ".join(
                    f"{e.name}: {getattr(e, 'kinds', '?')}" for e in self.executors
                )
                problems.append(
                    f"{step.instance} {step.interface}.{step.operation}: no executor runs "
                    f"'{operation.implementation.name}' (executors: {supported})"
                )
        if problems:
            raise EngineError("; ".join(problems))

    _ended_by_submit: dict[Any, str]

    def _refusal(self, executor: Executor, step: Step) -> str | None:
        """Why an executor that can tell before running (``unsupported``) will refuse the
        node (a DLS type or DAG orch does not serve), None when it will not."""
        check = getattr(executor, "unsupported", None)
        if check is None:
            return None
        node = self.model.nodes[step.node]
        try:
            properties = self.evaluator.value(node.properties, Scope(instance=step.instance))
        except EvaluationError:
            properties = {}  # known only at run time: the operation says it then
        result = check(node.types, properties if isinstance(properties, dict) else {})
        return str(result) if result else None

    def _bind_environments(self, plan: Plan) -> list[str]:
        """Each execution environment not bound yet gets its site now, before anything runs
        (its attributes are stored when its instance first moves)."""
        problems = unknown_environments(self.model, self.options.environment_sites)
        self._bindings: dict[str, dict[str, Any]] = {}
        for instance in plan.instances.values():
            node = self.model.nodes[instance.node]
            if not is_environment(node):
                continue
            if SITE_ATTRIBUTE in self.evaluator.attributes.get(instance.id, {}):
                continue
            try:
                site = choose_site(node.name, self.options.environment_sites)
                self._bindings[instance.id] = site_attributes(site)
            except UnboundEnvironment as exc:
                problems.append(str(exc))
        return problems

    def _executor_for(self, implementation: FileRef) -> Executor | None:
        for executor in self.executors:
            if executor.accepts(implementation.name, implementation.type):
                return executor
        return None

    def _operation(self, step: Step) -> Operation | None:
        node = self.model.nodes[step.node]
        if step.link is not None:
            source = self.model.nodes[step.link.source.rsplit("/", 1)[0]]
            requirement = source.requirements[step.link.requirement]
            for operations in requirement.interfaces.values():
                if step.operation in operations:
                    return operations[step.operation]
            return None
        return node.operation(step.interface or "", step.operation or "")

    # ------------------------------------------------------------------ survivors
    def _settle_survivors(self) -> bool:
        """Before anything runs: what operations interrupted by a crash left running is waited
        for (or stopped), so that no operation runs twice at once. False when the user
        stopped the run while waiting."""
        return survivors.settle(
            self.store, self.name, lambda instance: self.pool.get(host_for(self.evaluator,
            instance)), self.options.survivors, self._note, self._wait_or_stop,
        )  # fmt: skip

    def _wait_or_stop(self, seconds: float) -> bool:
        """Sleep, unless the user stops the run (True then)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping:
                return True
            with contextlib.suppress(queue.Empty):
                kind, payload = self._done.get(timeout=max(0.0, deadline - time.monotonic()))
                if kind == "signal":
                    self._announce_stop(cancelling=payload)
        return self._stopping

    def _note(self, message: str) -> None:
        self._emit(Event("message", self.name, message=message), store=True)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, plan: Plan, summary: RunSummary) -> None:
        dependents = plan.dependents()
        waiting = {sid: len(s.deps) for sid, s in plan.steps.items()}
        watching = {sid: len(s.on_failure_of) for sid, s in plan.steps.items()}
        failed_before: dict[str, bool] = {}
        self.outcome: dict[str, str] = {}
        ready: deque[str] = deque()
        self._emit(
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

        def finished(step_id: str, outcome: str) -> None:
            self.outcome[step_id] = outcome
            for child in dependents[step_id]:
                step = plan.steps[child]
                if step_id in step.on_failure_of:
                    watching[child] -= 1
                    failed_before[child] = failed_before.get(child, False) or outcome == "failed"
                if step_id in step.deps:
                    waiting[child] -= 1
                    if outcome != "ok":
                        failed_before.setdefault(f"blocked:{child}", True)
                if waiting[child] == 0 and watching[child] == 0:
                    release(child)

        def release(step_id: str) -> None:
            step = plan.steps[step_id]
            blocked = failed_before.get(f"blocked:{step_id}", False)
            if step.on_failure_of and not failed_before.get(step_id, False):
                blocked = True  # a failure handler whose steps all succeeded
            if blocked:
                summary.skipped += 1 if step.on_failure_of == [] else 0
                self._emit(
                    self._event(
                        "step-skip", step, step.title, {"reason": "a step it needs did not succeed"}
                    )
                )
                finished(step_id, "skipped")
            else:
                ready.append(step_id)

        def failed_to_start(step_id: str, failure: Failure) -> None:
            summary.ran += 1
            summary.failed += 1
            summary.failures.append(failure)
            finished(step_id, "failed")
            if self.options.fail_fast:
                self.stop()

        for sid, step in plan.steps.items():
            if not step.deps and not step.on_failure_of:
                ready.append(sid)
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers))
        try:
            while ready or self._running:
                while ready and self._active() < self.options.workers:
                    step_id = ready.popleft()
                    if self._stopping:
                        continue
                    step = plan.steps[step_id]
                    if step_id in self.done:
                        summary.done_before += 1
                        finished(step_id, "ok")
                        continue
                    operation = self._operation(step)
                    job = None
                    if step.job in ("run", "cancel"):
                        job = self.store.active_job(self.name, step.instance)
                    if step.job == "run" and job is None and operation is not None:
                        message = f"no running job of {step.instance} to watch: submit it first"
                        failed_to_start(step_id, self._fail_before_start(step, message))
                        continue
                    if (
                        step.kind == "state"
                        or (step.job == "cancel" and job is None)
                        or operation is None
                        or operation.implementation is None
                    ):
                        self._state_step(step)
                        finished(step_id, "ok")
                        continue
                    outcome = self._start(step, pool, attempt=1, job=job)
                    if outcome is not None:  # could not even start (evaluation error)
                        failed_to_start(step_id, outcome)
                if self._stopping and self._sleeping:
                    self._leave_jobs_running()
                if not self._running:
                    if self._stopping:
                        self._drain_signals()
                        break
                    continue
                message = self._next_message(self._next_poll())
                if message is None:
                    self._poll_due(pool)
                    continue
                kind, payload = message
                if kind == "line":
                    step_id, stream, line = payload
                    running = self._running.get(step_id)
                    if running is not None:
                        self._emit(self._event("output", running.step, line, {"stream": stream}))
                    continue
                if kind == "signal":
                    self._announce_stop(cancelling=payload)
                    continue
                step_id, result = payload
                running = self._running[step_id]
                if running.step.job == "run" and result.ok:
                    result = self._watched(running, result)
                    if result is None:  # still running: poll again later
                        continue
                del self._running[step_id]
                if (
                    not result.ok
                    and not result.started
                    and running.attempt <= self.options.retries_on_drop
                    and not self._stopping
                ):
                    self._record(running, result)
                    retry = (
                        f"{running.step.title}: {result.message}; "
                        f"retrying on a new connection (attempt {running.attempt + 1})"
                    )
                    self._emit(self._event("message", running.step, retry, {}), store=True)
                    self._start(running.step, pool, attempt=running.attempt + 1, job=running.job)
                    continue
                summary.ran += 1
                failure = self._record(running, result)
                if result.ok:
                    summary.succeeded += 1
                    finished(step_id, "ok")
                else:
                    summary.failed += 1
                    if failure is not None:
                        summary.failures.append(failure)
                    finished(step_id, "failed")
                    if self.options.fail_fast:
                        self.stop()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._left = [s for s in plan.steps if s not in self.outcome]
        if self._stopping:
            summary.skipped += 0  # steps never started are simply not done: resume runs them

    def _drain_signals(self) -> None:
        while True:
            try:
                kind, payload = self._done.get_nowait()
            except queue.Empty:
                return
            if kind == "signal":
                self._announce_stop(cancelling=payload)

    def _announce_stop(self, *, cancelling: bool) -> None:
        count = len(self._running)
        message = (
            f"cancelling {count} running operation(s)"
            if cancelling
            else f"stopping: waiting for {count} running operation(s) "
            "(interrupt again to cancel them)"
        )
        self._emit(Event("message", self.name, message=message), store=True)

    def _next_message(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next message, or None once ``timeout`` seconds passed (a job poll is due)."""
        while True:
            try:
                return self._done.get(timeout=0.5 if timeout is None else min(timeout, 0.5))
            except queue.Empty:
                if timeout is not None:
                    return None

    # ------------------------------------------------------------------ jobs
    def _active(self) -> int:
        """Operations running now (job watches between two polls do not take a worker)."""
        return len(self._running) - len(self._sleeping)

    def _next_poll(self) -> float | None:
        if not self._sleeping:
            return None
        return max(0.0, min(self._sleeping.values()) - time.monotonic())

    def _poll_due(self, pool: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        for step_id, due in sorted(self._sleeping.items(), key=lambda item: item[1]):
            if due <= now:
                del self._sleeping[step_id]
                running = self._running[step_id]
                running.due = due
                pool.submit(self._work, running, self.store.log_path(self.name, running.op_id))

    def _watched(self, running: _Running, result: OperationResult) -> OperationResult | None:
        """A run operation's report on its job: None while the job goes on (the next poll is
        scheduled), else the step's result."""
        job = running.job
        assert job is not None
        reported = str(result.outputs.get(jobs.JOB_STATUS, "")).strip()
        running.polls += 1
        where = running.task.host.describe()
        if not reported:
            return dataclasses.replace(
                result,
                status="failed",
                message=f"the run operation did not report {jobs.JOB_STATUS} for job "
                f"{job.job_id} on {where} (export it, or set_stats/set_fact it in a playbook)",
            )
        verdict = jobs.verdict(reported)
        if verdict == "waiting":
            if reported != job.detail:
                self.store.update_job(job.id, detail=reported)
                job.detail = reported
                self._emit(
                    self._event(
                        "message",
                        running.step,
                        f"job {job.job_id} of {running.step.instance} is {reported}",
                        {"job_id": job.job_id, "job_status": reported},
                    ),
                    store=True,
                )
            self._sleeping[running.step.id] = self._next_round(running)
            return None
        job.detail = reported
        if verdict == "failed":
            why = f": {result.message}" if result.message else ""
            return dataclasses.replace(
                result,
                status="failed",
                message=f"job {job.job_id} on {where} ended {reported}{why}",
            )
        return result

    def _next_round(self, running: _Running) -> float:
        """When to poll a job next: one interval from now, or, for executors that batch their
        status queries, the next multiple of the interval, so that every job of a site with
        that interval is due at the same instant and one query answers for all of them."""
        interval = jobs.poll_interval(
            self.model.nodes[running.step.node], self.options.poll_interval
        )
        now = time.monotonic()
        if not polls_in_rounds(running.executor):
            return now + interval
        return (now // interval + 1) * interval

    def _leave_jobs_running(self) -> None:
        """Stopping: job watches between polls end now, their jobs go on where they run."""
        for step_id in list(self._sleeping):
            del self._sleeping[step_id]
            running = self._running.pop(step_id)
            job = running.job
            assert job is not None
            message = (
                f"job {job.job_id} is still running on {running.task.host.describe()}: run the "
                f"same command again to watch it, or `orch cancel {self.name}` to cancel it"
            )
            self.store.finish_operation(
                running.op_id, status="interrupted", rc=None, outputs={}, stdout_tail=[],
                stderr_tail=[], message=message,
            )  # fmt: skip
            self._keep_records(running.step, running.op_id, running.attempt,
                               running.task.host.describe(), running=running,
                               end=("interrupted", None, message))  # fmt: skip
            self._emit_end(
                running.step, "interrupted", None, time.monotonic() - running.started, message,
                [], running.task.host.describe(),
            )  # fmt: skip

    def _job_record(
        self, running: _Running, result: OperationResult
    ) -> tuple[OperationResult, str | None, dict[str, Any]]:
        """A job operation's effects: (its result, the id of the job a submit started, the
        attributes to set on the instance)."""
        step, job = running.step, running.job
        if step.job == "submit":
            if not result.ok:
                return result, None, {}
            job_id = str(result.outputs.get(jobs.JOB_ID, "")).strip()
            watched = self._operation_named(step, "run")
            if job_id and (watched is None or watched.implementation is None):
                # nothing watches it: the submit did the whole job (orch's transfers, builds);
                # its record is closed as soon as it is made
                status = str(result.outputs.get(jobs.JOB_STATUS) or "COMPLETED")
                self._ended_by_submit[running.op_id] = status
                return result, job_id, {"job_id": job_id, "job_status": status}
            if not job_id:
                if watched is not None and watched.implementation is not None:
                    return (
                        dataclasses.replace(
                            result,
                            status="failed",
                            message=f"submit did not report {jobs.JOB_ID}, so the job cannot "
                            "be watched (export it, or set_stats/set_fact it in a playbook)",
                        ),
                        None,
                        {},
                    )
                return result, None, {}
            return result, job_id, {"job_id": job_id, "job_status": "SUBMITTED"}
        if job is None:
            return result, None, {}
        if step.job == "run" and result.ok:
            self.store.update_job(job.id, status="completed", detail=job.detail)
            job.status = "completed"
            return result, None, {"job_status": job.detail}
        if step.job == "run" and jobs.verdict(job.detail or "") == "failed":
            self.store.update_job(job.id, status="failed", detail=job.detail)
            job.status = "failed"
            return result, None, {"job_status": job.detail}
        if step.job == "cancel" and result.ok:
            self.store.update_job(job.id, status="cancelled", detail="CANCELLED")
            return result, None, {"job_status": "CANCELLED"}
        return result, None, {}

    def _operation_named(self, step: Step, name: str) -> Operation | None:
        return self.model.nodes[step.node].operation(step.interface or "", name)

    # ------------------------------------------------------------------ one step
    def _state_step(self, step: Step) -> None:
        updates = {}
        if step.state_after is not None:
            updates[step.instance] = self._state_update(step.instance, step.state_after)
        self.store.mark_step_done(self.name, self.plan.kind, step.id, updates or None)
        if step.state_after is not None:
            self._emit_state(step, step.state_after)

    def _state_update(self, instance: str, state: str) -> dict[str, Any]:
        self.states[instance] = state
        live = self.evaluator.attributes.setdefault(instance, {})
        live["state"] = state
        attributes: dict[str, Any] = {"state": state}
        bound = getattr(self, "_bindings", {}).get(instance)
        if bound and SITE_ATTRIBUTE not in live:
            # bound once, when it first moves: later runs find the same site in the state
            attributes.update(bound)
            live.update(attributes)
        return {"state": state, "attributes": attributes}

    def _emit_state(self, step: Step, state: str) -> None:
        self._emit(self._event("state", step, "", {"state": state}))

    def _start(
        self, step: Step, pool: ThreadPoolExecutor, attempt: int, job: JobRow | None = None
    ) -> Failure | None:
        operation = self._operation(step)
        assert operation is not None and operation.implementation is not None
        try:
            task = TaskBuilder(
                self.name, self.model, self.plan, self.evaluator, self.store, self.options
            ).task(step, operation, self.workflow_inputs, job)
        except EvaluationError as exc:
            return self._fail_before_start(step, f"cannot evaluate the inputs: {exc}", attempt)
        executor = self._executor_for(operation.implementation)
        assert executor is not None
        token = secrets.token_hex(8)
        task.environment[survivors.ENV] = token  # inherited by all the command starts
        process = {"token": token, "host_instance": step.instance}
        if step.job == "submit":
            # the job carries it (name, comment, id file): a submit that was interrupted after
            # the scheduler took the job finds that job again instead of submitting it twice
            process["execution"], again = self._execution_id(step)
            task.environment[EXECUTION_ENV] = process["execution"]
            if again:
                task.environment[EXECUTION_AGAIN_ENV] = "1"
        op_id = self._begin(step, task.host.describe(), attempt, process)
        if step.state_before is not None and step.link is None:
            self.store.update_instances(
                self.name, {step.instance: self._state_update(step.instance, step.state_before)}
            )
            self._emit_state(step, step.state_before)
        cancel = threading.Event()
        running = _Running(
            step, op_id, task, executor, operation, attempt, time.monotonic(), cancel, job
        )
        self._running[step.id] = running
        self._keep_records(step, op_id, attempt, task.host.describe(), running=running)
        self._emit(
            self._event(
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
        if step.job == "run" and polls_in_rounds(executor):
            expect = getattr(executor, "expect", None)
            if expect is not None:
                expect(task)  # the site's next status command includes this job
            self._sleeping[step.id] = self._next_round(running)  # first poll: next round
            return None
        log_path = self.store.log_path(self.name, op_id)
        pool.submit(self._work, running, log_path)
        return None

    def _execution_id(self, step: Step) -> tuple[str, bool]:
        """The id of this submit's execution, and whether an attempt had it before: the one its
        last attempt had when that attempt did not succeed (it may have reached the scheduler),
        else a new one."""
        for op in reversed(self.store.operations(self.name)):
            if op.step == step.id and op.instance == step.instance:
                previous = op.process.get("execution")
                if op.status != "ok" and previous:
                    return str(previous), True
                break
        return secrets.token_hex(8), False

    def _fail_before_start(self, step: Step, message: str, attempt: int = 1) -> Failure:
        """A step that fails before anything runs still gets its record and event."""
        started = time.time()
        op_id = self._begin(step, "-", attempt)
        self.store.finish_operation(
            op_id, status="failed", rc=None, outputs={}, stdout_tail=[], stderr_tail=[],
            message=message,
        )  # fmt: skip
        self._keep_records(step, op_id, attempt, "-", started=started,
                           end=("failed", None, message))  # fmt: skip
        self._emit_end(step, "failed", None, 0.0, message, [], "-")
        return Failure(
            step.id, step.title, step.node, step.instance, f"{step.interface}.{step.operation}",
            "-", "failed", None, message, [],
        )  # fmt: skip

    def _work(self, running: _Running, log_path: Path) -> None:
        """Runs in a worker thread: the executor, the log file, and nothing else. Whatever
        happens, the scheduler hears of the step's end (it would wait for ever otherwise)."""
        try:
            result = self._execute(running, log_path)
        except BaseException as exc:  # the log cannot be written, the interpreter is exiting...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result = OperationResult(
                "failed", message=f"orch could not run it: {type(exc).__name__}: {reason}"
            )
        self._done.put(("done", (running.step.id, result)))

    def _execute(self, running: _Running, log_path: Path) -> OperationResult:
        step_id = running.step.id
        try:
            log = open(log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            return OperationResult(
                "failed",
                message=f"cannot write its log {log_path}: {exc.strerror or exc} (the state "
                "folder is damaged or not writable)",
            )
        # the preamble every executor gets from the engine, plugins included: secrets masked in
        # what it logs and returns (whatever it masks itself), nothing started once cancelled
        mask = Masker(running.task.secret_values)
        folder = self.store.artifacts_dir(self.name, running.op_id)
        try:
            streams = artifacts.Streams(artifacts.make_folder(folder))
        except OSError as exc:
            log.close()
            return OperationResult(
                "failed",
                message=f"cannot write its records in {folder}: {exc.strerror or exc} (the "
                "state folder is damaged or not writable)",
            )
        with log, streams:

            def sink(stream: str, line: str) -> None:
                log.write(f"{'err' if stream == 'stderr' else 'out'} {line}\n")
                log.flush()
                streams.write(stream, line)
                self._done.put(("line", (step_id, stream, line)))

            context = RunContext(
                transport=self.pool.get,
                cancel=running.cancel,
                log=mask.sink(sink),
                work_root=(
                    self.options.remote_work_root
                    if not running.task.host.is_local
                    else self._local_work_root()
                ),
                artifacts_dir=str(folder),
                known_hosts=list(self.options.host_keys.known_hosts_files),
                poll_due=running.due,
                force_rebuild=self.options.force_rebuild,
            )
            if running.cancel.is_set():
                return OperationResult("cancelled", message="cancelled", started=False)
            try:
                return mask.result(running.executor.run(running.task, context))
            except Exception as exc:  # an executor bug must not kill the run
                return mask.result(OperationResult(
                    "failed",
                    message=f"internal error in the {running.executor.name} "
                    f"executor: {type(exc).__name__}: {exc}",
                ))  # fmt: skip

    def _keep_records(
        self, step: Step, op_id: int, attempt: int, host: str, *, running: _Running | None = None,
        started: float | None = None, end: tuple[str, int | None, str] | None = None,
    ) -> None:  # fmt: skip
        """The operation's ``task.json`` (and at its ``end``, status, rc, message: its ``rc``
        and ``status`` files too) in its folder of records. Secrets never reach it."""
        task = running.task if running is not None else None
        secrets = task.secret_values if task is not None else self.options.secret_values
        operation = self._operation(step)
        implementation = operation.implementation if operation is not None else None
        status, rc, message = end if end is not None else ("running", None, "")
        record = {
            "deployment": self.name,
            "run_id": getattr(self, "run_id", None),
            "operation_id": op_id,
            "step": step.id,
            "node": step.node,
            "instance": step.instance,
            "interface": step.interface or "",
            "operation": step.operation or "",
            "host": artifacts.scrubbed(host, secrets),
            "implementation": implementation.name if implementation is not None else None,
            "executor": running.executor.name if running is not None else None,
            "attempt": attempt,
            "started": artifacts.when(running.started_at if running is not None else started),
            "ended": artifacts.when(time.time()) if end is not None else None,
            "status": status,
            "rc": rc,
            "message": artifacts.scrubbed(message, secrets),
            "inputs": artifacts.scrubbed(task.inputs, secrets) if task is not None else {},
        }
        if running is not None and running.job is not None:
            record["job_id"] = running.job.job_id
        folder = self.store.artifacts_dir(self.name, op_id)
        try:
            if end is None:
                artifacts.write_task(artifacts.make_folder(folder), record)
            else:
                artifacts.finish(folder, rc=rc, status=status, record=record)
        except OSError as exc:  # the run goes on: the store has the operation's record
            self._emit(self._event(
                "message", step, f"cannot keep the records of {step.title} in {folder}: "
                f"{exc.strerror or exc}", {},
            ), store=True)  # fmt: skip

    def _local_work_root(self) -> str:
        if self.options.local_work_root:
            return self.options.local_work_root
        return str((self.store.log_path(self.name, 0).parent.parent / "work").resolve())

    def _record(self, running: _Running, result: OperationResult) -> Failure | None:
        step = running.step
        elapsed = time.monotonic() - running.started
        updates: dict[str, dict[str, Any]] = {}
        job_id: str | None = None
        if step.job is not None:
            result, job_id, job_attributes = self._job_record(running, result)
            if job_attributes:
                updates[step.instance] = {"attributes": dict(job_attributes)}
                self.evaluator.attributes.setdefault(step.instance, {}).update(job_attributes)
        if step.job == "run" and running.job is not None and running.job.status == "failed":
            # the job itself failed: resuming submits it again rather than watching a dead job
            update = self._state_update(step.instance, "failed")
            merged = updates.setdefault(step.instance, {})
            merged["state"] = update["state"]
            merged.setdefault("attributes", {}).update(update["attributes"])
            for other in self.plan.steps.values():
                if other.instance == step.instance and other.job == "submit":
                    self.store.unmark_step_done(self.name, self.plan.kind, other.id)
        if result.ok or step.job == "run":  # a failed job's report (exit code...) is real too
            owner = self._owner(step)
            key = (owner, step.interface or "", step.operation or "")
            if result.ok:
                self.evaluator.outputs[key] = dict(result.outputs)
            for target, change in self._attribute_mappings(
                step, running.operation, result.outputs
            ).items():
                updates.setdefault(target, {}).setdefault("attributes", {}).update(
                    change.get("attributes", {})
                )
            if result.ok and step.state_after is not None and step.link is None:
                update = self._state_update(step.instance, step.state_after)
                merged = updates.setdefault(step.instance, {})
                merged["state"] = update["state"]
                merged.setdefault("attributes", {}).update(update["attributes"])
        self.store.finish_operation(
            running.op_id,
            status=result.status,
            rc=result.rc,
            outputs=result.outputs,
            stdout_tail=result.stdout_tail,
            stderr_tail=result.stderr_tail,
            message=result.message,
            instance_updates=updates or None,
            done_step=(self.plan.kind, step.id) if result.ok else None,
            job_id=job_id,
        )
        self._keep_records(
            step, running.op_id, running.attempt, running.task.host.describe(), running=running,
            end=(result.status, result.rc, result.message),
        )  # fmt: skip
        ended = self._ended_by_submit.pop(running.op_id, None)
        if ended is not None:
            record = self.store.active_job(self.name, step.instance)
            if record is not None:
                failed = jobs.verdict(ended) == "failed"
                self.store.update_job(record.id, status="failed" if failed else "completed",
                                      detail=ended)  # fmt: skip
        tail = result.stderr_tail[-5:] or result.stdout_tail[-5:]
        self._emit_end(
            step,
            result.status,
            result.rc,
            elapsed,
            result.message,
            tail,
            running.task.host.describe(),
            outputs=result.outputs,
        )
        if result.ok:
            if step.state_after is not None and step.link is None:
                self._emit_state(step, step.state_after)
            return None
        return Failure(
            step.id,
            step.title,
            step.node,
            step.instance,
            f"{step.interface}.{step.operation}",
            running.task.host.describe(),
            result.status,
            result.rc,
            result.message or result.status,
            (result.stdout_tail + result.stderr_tail)[-10:],
        )

    def _emit_end(
        self,
        step: Step,
        status: str,
        rc: int | None,
        elapsed: float,
        message: str,
        tail: list[str],
        host: str,
        outputs: dict[str, Any] | None = None,
    ) -> None:
        self._emit(
            self._event(
                "step-end",
                step,
                message or step.title,
                {
                    "title": step.title,
                    "status": status,
                    "rc": rc,
                    "elapsed": round(elapsed, 3),
                    "host": host,
                    "tail": tail,
                    "outputs": sorted(outputs or {}),
                },
            ),
            store=True,
        )

    def _attribute_mappings(
        self, step: Step, operation: Operation, outputs: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """TOSCA 1.3 operation ``outputs``: an output's value becomes an attribute."""
        updates: dict[str, dict[str, Any]] = {}
        mappings = self.evaluator.output_mappings(operation, step.instance, step.link, outputs)
        for name, target in mappings.items():
            if name not in outputs or not isinstance(target, list) or len(target) < 2:
                continue
            entity, attribute = str(target[0]), str(target[1])
            if entity == "SELF" and step.link is not None:
                owner = link_key(step.link)
            elif entity == "SOURCE" and step.link is not None:
                owner = step.link.source
            elif entity == "TARGET" and step.link is not None:
                owner = step.link.target
            else:
                owner = step.instance
            value = outputs[name]
            if owner in self.plan.instances:
                declared = self.model.nodes[self.plan.instances[owner].node].attribute_types
                value = typed(value, declared.get(attribute))
            elif step.link is not None and owner == link_key(step.link):
                value = typed(value, self._relationship_attribute_type(step, attribute))
            # a relationship's attributes are stored like an instance's (the store keeps them
            # apart), so that a resumed deploy or a later run reads them too
            updates.setdefault(owner, {}).setdefault("attributes", {})[attribute] = value
            self.evaluator.attributes.setdefault(owner, {})[attribute] = value
        return updates

    def _relationship_attribute_type(self, step: Step, attribute: str) -> str | None:
        assert step.link is not None
        source = self.model.nodes[step.link.source.rsplit("/", 1)[0]]
        return source.requirements[step.link.requirement].attribute_types.get(attribute)

    def _begin(
        self, step: Step, host: str, attempt: int, process: dict[str, Any] | None = None
    ) -> int:
        """The operation's record, written before it runs (a crash then shows it interrupted,
        and ``process`` lets the next run find what it left running)."""
        return self.store.begin_operation(
            self.run_id, self.name, step.id, step.node, self._owner(step),
            step.interface or "", step.operation or "", host, attempt, process,
        )  # fmt: skip

    def _owner(self, step: Step) -> str:
        return link_key(step.link) if step.link is not None else step.instance

    # ------------------------------------------------------------------ events, signals
    def _event(self, kind: Any, step: Step, message: str, data: dict[str, Any]) -> Event:
        return Event(
            kind, self.name, node=step.node, instance=step.instance, step=step.id,
            message=message, data=data,
        )  # fmt: skip

    def _emit(self, event: Event, *, store: bool = False) -> None:
        if store:
            self.store.add_event(
                self.name,
                getattr(self, "run_id", None),
                event.kind,
                node=event.node,
                instance=event.instance,
                step=event.step,
                message=event.message,
                data=event.data,
            )
        self.listener(event)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def interrupt(signum: int, _frame: Any) -> None:
            # a second interrupt, or SIGTERM, cancels the running operations
            self.stop(
                cancel=signum == signal.SIGTERM or self._stopping,
                cancel_jobs=self.options.cancel_jobs_on_interrupt,
            )

        def cancel_jobs(_signum: int, _frame: Any) -> None:
            # `orch cancel NAME` from another process: stop now, then cancel the jobs
            self.stop(cancel=True, cancel_jobs=True)

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, interrupt)
        previous[CANCEL_SIGNAL] = signal.signal(CANCEL_SIGNAL, cancel_jobs)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def typed(value: Any, type_name: str | None) -> Any:
    """A script's output (text) as the attribute's declared type, when it reads as one."""
    if not isinstance(value, str) or type_name is None:
        return value
    try:
        if type_name == "integer":
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if type_name in ("list", "map"):
            import json

            parsed = json.loads(value)
            return parsed if isinstance(parsed, (list, dict)) else value
    except ValueError:
        return value
    return value


def _instance_row(deployment: str, instance_id: str, node: str) -> Any:
    from orch.state import InstanceRow

    return InstanceRow(deployment, instance_id, node, "initial", {})


Callback = Callable[[Event], None]
