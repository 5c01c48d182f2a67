"""Everything a run writes, from the scheduler's thread only: the store's records (operations,
steps done, instance states and attributes, jobs), each operation's folder of records
(``orch.engine.artifacts``), and the events the listener hears (and the store keeps). Every
finished step is written before anything depends on it."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from orch.engine import artifacts, jobs
from orch.engine.environments import SITE_ATTRIBUTE
from orch.engine.evaluate import Evaluator, link_key, stored_evaluator
from orch.engine.events import Event, Listener
from orch.engine.runs import EngineOptions, Failure, Running, operation_named, operation_of
from orch.executors.base import OperationResult
from orch.plan.steps import Plan, Step
from orch.state import InstanceRow, OperationRow, Store
from orch.tosca.model import Model, Operation


class Recorder:
    def __init__(
        self, store: Store, deployment: str, model: Model, options: EngineOptions,
        listener: Listener,
    ):  # fmt: skip
        self.store = store
        self.name = deployment
        self.model = model
        self.options = options
        self.listener = listener
        self.run_id: int | None = None
        """The run being recorded (None before it began)."""
        self.plan: Plan
        self.evaluator: Evaluator
        self.states: dict[str, str] = {}
        self.bindings: dict[str, dict[str, Any]] = {}
        """Execution environments bound to a site this run: their attributes to store."""
        self.ended_by_submit: dict[int, str] = {}
        """Operations whose submit did the whole job: the job's end status, by operation id."""

    # ------------------------------------------------------------------ the state as a run starts
    def load(self, plan: Plan, inputs: dict[str, Any]) -> set[str]:
        """The deployment's state as a run of ``plan`` starts: the instances it adds are saved,
        the evaluator reads the stored attributes, and the operations a killed run left
        running are marked interrupted (and said). The steps done before are returned."""
        rows = {row.id: row for row in self.store.instances(self.name)}
        new = [
            InstanceRow(self.name, i.id, i.node, "initial", {})
            for i in plan.instances.values()
            if i.id not in rows
        ]
        if new:
            self.store.save_instances(self.name, new)
            rows.update({row.id: row for row in new})
        self.states = {iid: row.state for iid, row in rows.items()}
        self.evaluator = stored_evaluator(
            self.store, self.name, self.model, plan.instances, inputs, rows.values()
        )
        done = self.store.done_steps(self.name, plan.kind)
        done -= self._dead_submits(plan, done)
        interrupted = self.store.interrupt_stale(self.name)
        for op in interrupted:
            self.emit(
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
            self.close_records(op)
        return done

    def _dead_submits(self, plan: Plan, done: set[str]) -> set[str]:
        """The done submit steps whose job was cancelled (`orch cancel`) or failed since:
        a resumed run submits them again rather than watching a job that is no more."""
        dead = set()
        for step_id in done:
            step = plan.steps.get(step_id)
            if step is None or step.job != "submit":
                continue
            job = self.store.last_job(self.name, step.instance)
            if job is not None and job.status in ("cancelled", "failed"):
                self.store.unmark_step_done(self.name, plan.kind, step_id)
                dead.add(step_id)
                self.emit(Event(
                    "message", self.name, node=step.node, instance=step.instance, step=step_id,
                    message=f"job {job.job_id} of {step.instance} was {job.status}: "
                    "it is submitted again",
                ))  # fmt: skip
        return dead

    # ------------------------------------------------------------------ events
    def event(self, kind: Any, step: Step, message: str, data: dict[str, Any]) -> Event:
        return Event(
            kind, self.name, node=step.node, instance=step.instance, step=step.id,
            message=message, data=data,
        )  # fmt: skip

    def emit(self, event: Event, *, store: bool = False) -> None:
        if store:
            self.store.add_event(
                self.name,
                self.run_id,
                event.kind,
                node=event.node,
                instance=event.instance,
                step=event.step,
                message=event.message,
                data=event.data,
            )
        self.listener(event)

    def emit_end(
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
        self.emit(
            self.event(
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

    def emit_state(self, step: Step, state: str) -> None:
        self.emit(self.event("state", step, "", {"state": state}))

    # ------------------------------------------------------------------ states
    def state_step(self, step: Step) -> None:
        updates = {}
        if step.state_after is not None:
            updates[step.instance] = self.state_update(step.instance, step.state_after)
        self.store.mark_step_done(self.name, self.plan.kind, step.id, updates or None)
        if step.state_after is not None:
            self.emit_state(step, step.state_after)

    def state_update(self, instance: str, state: str) -> dict[str, Any]:
        self.states[instance] = state
        live = self.evaluator.attributes.setdefault(instance, {})
        live["state"] = state
        attributes: dict[str, Any] = {"state": state}
        bound = self.bindings.get(instance)
        if bound and SITE_ATTRIBUTE not in live:
            # bound once, when it first moves: later runs find the same site in the state
            attributes.update(bound)
            live.update(attributes)
        return {"state": state, "attributes": attributes}

    # ------------------------------------------------------------------ operations
    def begin(
        self, step: Step, host: str, attempt: int, process: dict[str, Any] | None = None
    ) -> int:
        """The operation's record, written before it runs (a crash then shows it interrupted,
        and ``process`` lets the next run find what it left running)."""
        assert self.run_id is not None
        return self.store.begin_operation(
            self.run_id, self.name, step.id, step.node, owner(step),
            step.interface or "", step.operation or "", host, attempt, process,
        )  # fmt: skip

    def fail_before_start(self, step: Step, message: str, attempt: int = 1) -> Failure:
        """A step that fails before anything runs still gets its record and event."""
        started = time.time()
        op_id = self.begin(step, "-", attempt)
        self.store.finish_operation(
            op_id, status="failed", rc=None, outputs={}, stdout_tail=[], stderr_tail=[],
            message=message,
        )  # fmt: skip
        self.keep_records(step, op_id, attempt, "-", started=started,
                          end=("failed", None, message))  # fmt: skip
        self.emit_end(step, "failed", None, 0.0, message, [], "-")
        return Failure(
            step.id, step.title, step.node, step.instance, f"{step.interface}.{step.operation}",
            "-", "failed", None, message, [],
        )  # fmt: skip

    def left_running(self, running: Running, message: str) -> None:
        """A job watch that ends while its job goes on (the run stops)."""
        self.store.finish_operation(
            running.op_id, status="interrupted", rc=None, outputs={}, stdout_tail=[],
            stderr_tail=[], message=message,
        )  # fmt: skip
        self.keep_records(running.step, running.op_id, running.attempt,
                          running.task.host.describe(), running=running,
                          end=("interrupted", None, message))  # fmt: skip
        self.emit_end(
            running.step, "interrupted", None, time.monotonic() - running.started, message,
            [], running.task.host.describe(),
        )  # fmt: skip

    def record(self, running: Running, result: OperationResult) -> Failure | None:
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
            update = self.state_update(step.instance, "failed")
            merged = updates.setdefault(step.instance, {})
            merged["state"] = update["state"]
            merged.setdefault("attributes", {}).update(update["attributes"])
            for other in self.plan.steps.values():
                if other.instance == step.instance and other.job == "submit":
                    self.store.unmark_step_done(self.name, self.plan.kind, other.id)
        if result.ok or step.job == "run":  # a failed job's report (exit code...) is real too
            key = (owner(step), step.interface or "", step.operation or "")
            if result.ok:
                self.evaluator.outputs[key] = dict(result.outputs)
            for target, change in self._attribute_mappings(
                step, running.operation, result.outputs
            ).items():
                updates.setdefault(target, {}).setdefault("attributes", {}).update(
                    change.get("attributes", {})
                )
            if result.ok and step.state_after is not None and step.link is None:
                update = self.state_update(step.instance, step.state_after)
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
        self.keep_records(
            step, running.op_id, running.attempt, running.task.host.describe(), running=running,
            end=(result.status, result.rc, result.message),
        )  # fmt: skip
        ended = self.ended_by_submit.pop(running.op_id, None)
        if ended is not None:
            record = self.store.active_job(self.name, step.instance)
            if record is not None:
                failed = jobs.verdict(ended) == "failed"
                self.store.update_job(record.id, status="failed" if failed else "completed",
                                      detail=ended)  # fmt: skip
        tail = result.stderr_tail[-5:] or result.stdout_tail[-5:]
        self.emit_end(
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
                self.emit_state(step, step.state_after)
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

    def _job_record(
        self, running: Running, result: OperationResult
    ) -> tuple[OperationResult, str | None, dict[str, Any]]:
        """A job operation's effects: (its result, the id of the job a submit started, the
        attributes to set on the instance)."""
        step, job = running.step, running.job
        if step.job == "submit":
            if not result.ok:
                return result, None, {}
            job_id = str(result.outputs.get(jobs.JOB_ID, "")).strip()
            watched = operation_named(self.model, step, "run")
            if job_id and (watched is None or watched.implementation is None):
                # nothing watches it: the submit did the whole job (orch's transfers, builds);
                # its record is closed as soon as it is made
                status = str(result.outputs.get(jobs.JOB_STATUS) or "COMPLETED")
                self.ended_by_submit[running.op_id] = status
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
                owner_id = link_key(step.link)
            elif entity == "SOURCE" and step.link is not None:
                owner_id = step.link.source
            elif entity == "TARGET" and step.link is not None:
                owner_id = step.link.target
            else:
                owner_id = step.instance
            value = outputs[name]
            if owner_id in self.plan.instances:
                declared = self.model.nodes[self.plan.instances[owner_id].node].attribute_types
                value = typed(value, declared.get(attribute))
            elif step.link is not None and owner_id == link_key(step.link):
                value = typed(value, self._relationship_attribute_type(step, attribute))
            # a relationship's attributes are stored like an instance's (the store keeps them
            # apart), so that a resumed deploy or a later run reads them too
            updates.setdefault(owner_id, {}).setdefault("attributes", {})[attribute] = value
            self.evaluator.attributes.setdefault(owner_id, {})[attribute] = value
        return updates

    def _relationship_attribute_type(self, step: Step, attribute: str) -> str | None:
        assert step.link is not None
        source = self.model.nodes[step.link.source.rsplit("/", 1)[0]]
        return source.requirements[step.link.requirement].attribute_types.get(attribute)

    # ------------------------------------------------------------------ folders of records
    def keep_records(
        self, step: Step, op_id: int, attempt: int, host: str, *, running: Running | None = None,
        started: float | None = None, end: tuple[str, int | None, str] | None = None,
    ) -> None:  # fmt: skip
        """The operation's ``task.json`` (and at its ``end``, status, rc, message: its ``rc``
        and ``status`` files too) in its folder of records. Secrets never reach it."""
        record = artifacts.task_record(
            self.name, self.run_id, step, op_id, attempt, host, operation_of(self.model, step),
            running, self.options.secret_values, started, end,
        )  # fmt: skip
        folder = self.store.artifacts_dir(self.name, op_id)
        try:
            if end is None:
                artifacts.write_task(artifacts.make_folder(folder), record)
            else:
                artifacts.finish(folder, rc=end[1], status=end[0], record=record)
        except OSError as exc:  # the run goes on: the store has the operation's record
            self.emit(self.event(
                "message", step, f"cannot keep the records of {step.title} in {folder}: "
                f"{exc.strerror or exc}", {},
            ), store=True)  # fmt: skip

    def close_records(self, op: OperationRow) -> None:
        """The records of an operation the previous run left running (it was killed): its
        status is interrupted."""
        with contextlib.suppress(OSError):
            artifacts.interrupted(self.store.artifacts_dir(self.name, op.id), self.name, op)


def owner(step: Step) -> str:
    """Whose outputs and attributes a step's operation sets: its instance, or its
    relationship's key."""
    return link_key(step.link) if step.link is not None else step.instance


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
