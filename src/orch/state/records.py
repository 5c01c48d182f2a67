"""The records of what runs did: runs, operations, jobs, steps done and events."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from orch.state import lock as locking
from orch.state.db import Database
from orch.state.lock import StateError
from orch.state.rows import (
    _EVENT,
    _JOB,
    _OPERATION,
    _RUN,
    INITIAL_STATE,
    JOB_ENDS,
    JOB_RUNNING,
    OPERATION_ENDS,
    RUN_ACTIONS,
    RUN_ENDS,
    Deployment,
    EventRow,
    JobRow,
    OperationRow,
    RunRow,
    _dump,
    _event,
    _operation,
    folder_name,
)


class Records(Database):
    """Runs, operations, jobs, steps done and events of the deployments."""

    # -- runs -------------------------------------------------------------------------------

    def begin_run(self, name: str, action: str, workflow: str | None = None) -> int:
        if action not in RUN_ACTIONS:
            raise ValueError(f"run action {action!r} is not one of {sorted(RUN_ACTIONS)}")
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM deployments WHERE name = ?", (name,)).fetchone():
                raise StateError(f"no deployment '{name}'")
            cursor = c.execute(
                "INSERT INTO runs (deployment, action, workflow, started, status, pid) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                (name, action, workflow, time.time(), os.getpid()),
            )
        run_id = int(cursor.lastrowid or 0)
        self._my_runs.add(run_id)
        return run_id

    def end_run(self, run_id: int, status: str) -> None:
        if status not in RUN_ENDS:
            raise ValueError(f"run status {status!r} is not one of {sorted(RUN_ENDS)}")
        now = time.time()
        with self._tx() as c:
            cursor = c.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ?", (status, now, run_id)
            )
            self._changed(cursor, f"run {run_id}")
            # a run that ends has nothing running (one stopped by an error, say)
            c.execute(
                "UPDATE operations SET status = 'interrupted', ended = ?, message = ? "
                "WHERE run_id = ? AND status = 'running'",
                (now, f"interrupted: its run ended {status}", run_id),
            )
        self._my_runs.discard(run_id)

    def runs(self, name: str) -> list[RunRow]:
        rows = self._all(f"SELECT {_RUN} FROM runs WHERE deployment = ? ORDER BY id", (name,))
        return [RunRow(*r) for r in rows]

    def stale_runs(self, name: str) -> dict[int, int]:
        """``{run id: pid}`` of the runs marked running whose process is gone: no one holds
        the deployment's lock (or this store holds it and did not begin the run), the lock's
        holder is another process, or the run's pid is dead. Reads only.

        The running runs are read before the lock is probed: a run begun later is by a holder
        that wrote its pid first, so a holder read afterwards is never older than the runs.
        """
        running = self._all(
            "SELECT id, pid FROM runs WHERE deployment = ? AND status = 'running'", (name,)
        )
        if not running:
            return {}
        if name in self._held:
            return {rid: pid for rid, pid in running if rid not in self._my_runs}
        if not self._locks.is_locked(name):
            return dict(running)
        holder = self.holder(name)
        return {
            rid: pid
            for rid, pid in running
            if not locking.pid_alive(pid) or (holder is not None and pid != holder.pid)
        }

    def live_status(self, deployment: Deployment) -> str:
        """The status to show: a deployment left 'deploying' (or any status with a run left
        running) by an orch that is gone reads 'interrupted (orch pid N is gone)'."""
        stale = self.stale_runs(deployment.name)
        if not stale:
            return deployment.status
        return f"interrupted (orch pid {stale[max(stale)]} is gone)"

    def interrupt_stale(self, name: str) -> list[OperationRow]:
        """Mark "interrupted" the runs left "running" by a process that is gone (see
        ``stale_runs``), and their running operations, which are returned."""
        gone = self.stale_runs(name)
        if not gone:
            return []
        now = time.time()
        interrupted: list[OperationRow] = []
        with self._tx() as c:
            for rid, pid in gone.items():
                cursor = c.execute(
                    "UPDATE runs SET status = 'interrupted', ended = ? "
                    "WHERE id = ? AND status = 'running'",
                    (now, rid),
                )
                if cursor.rowcount == 0:
                    continue  # ended meanwhile
                message = f"interrupted: the orch process (pid {pid}) stopped during the operation"
                ids = [
                    r[0]
                    for r in c.execute(
                        "SELECT id FROM operations WHERE run_id = ? AND status = 'running'", (rid,)
                    )
                ]
                for op_id in ids:
                    c.execute(
                        "UPDATE operations SET status = 'interrupted', ended = ?, message = ? "
                        "WHERE id = ?",
                        (now, message, op_id),
                    )
                    row = c.execute(
                        f"SELECT {_OPERATION} FROM operations WHERE id = ?", (op_id,)
                    ).fetchone()
                    interrupted.append(_operation(row))
        return interrupted

    # -- operations -------------------------------------------------------------------------

    def begin_operation(
        self,
        run_id: int,
        name: str,
        step: str,
        node: str,
        instance: str,
        interface: str,
        operation: str,
        host: str,
        attempt: int = 1,
        process: dict[str, Any] | None = None,
    ) -> int:
        """An operation's record, written before it runs; ``process`` says how to recognise
        what it starts on its host should this orch die (see ``survivors``)."""
        params = (run_id, name, step, node, instance, interface, operation, host, time.time())
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO operations (run_id, deployment, step, node, instance, interface, "
                "operation, host, status, started, outputs, stdout_tail, stderr_tail, message, "
                "attempt, process) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, '{}', '[]', '[]', '', ?, ?)",
                (*params, attempt, _dump(process or {})),
            )
        return int(cursor.lastrowid or 0)

    def unsettled(self, name: str) -> list[OperationRow]:
        """Interrupted operations whose processes may still run (their survivors were not
        looked for yet), oldest first."""
        rows = self._all(
            f"SELECT {_OPERATION} FROM operations WHERE deployment = ? AND status = "
            "'interrupted' AND json_extract(process, '$.token') IS NOT NULL "
            "AND json_extract(process, '$.settled') IS NULL ORDER BY id",
            (name,),
        )
        return [_operation(r) for r in rows]

    def set_operation_process(self, op_id: int, process: dict[str, Any]) -> None:
        """Replace what is known of the operation's processes (see ``begin_operation``)."""
        with self._tx() as c:
            c.execute("UPDATE operations SET process = ? WHERE id = ?", (_dump(process), op_id))

    def finish_operation(
        self,
        op_id: int,
        *,
        status: str,
        rc: int | None,
        outputs: dict[str, Any],
        stdout_tail: list[str],
        stderr_tail: list[str],
        message: str,
        instance_updates: dict[str, dict[str, Any]] | None = None,
        done_step: tuple[str, str] | None = None,
        job_id: str | None = None,
    ) -> None:
        """Record the end of an operation, with the instance changes it made, (for resume) its
        step done and (for a job's submit) the job it started, all or nothing."""
        if status not in OPERATION_ENDS:
            raise ValueError(f"operation status {status!r} is not one of {sorted(OPERATION_ENDS)}")
        now = time.time()
        params = (status, rc, now, _dump(outputs), _dump(stdout_tail), _dump(stderr_tail))
        with self._tx() as c:
            row = c.execute("SELECT deployment FROM operations WHERE id = ?", (op_id,)).fetchone()
            if row is None:
                raise StateError(f"no operation {op_id}")
            c.execute(
                "UPDATE operations SET status = ?, rc = ?, ended = ?, outputs = ?, "
                "stdout_tail = ?, stderr_tail = ?, message = ? WHERE id = ?",
                (*params, message, op_id),
            )
            if instance_updates:
                self._apply(c, row[0], instance_updates)
            if done_step is not None:
                self._done(c, row[0], done_step[0], done_step[1], now)
            if job_id is not None:
                c.execute(
                    "INSERT INTO jobs (deployment, instance, node, run_id, submit_op, job_id, "
                    "host, status, detail, submitted) SELECT deployment, instance, node, run_id, "
                    "id, ?, host, ?, 'SUBMITTED', ? FROM operations WHERE id = ?",
                    (job_id, JOB_RUNNING, now, op_id),
                )

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self, name: str, *, active: bool = False) -> list[JobRow]:
        """Every execution of the deployment's jobs, oldest first (only running ones when
        ``active``)."""
        where = "deployment = ?" + (" AND status = ?" if active else "")
        params = (name, JOB_RUNNING) if active else (name,)
        rows = self._all(f"SELECT {_JOB} FROM jobs WHERE {where} ORDER BY id", params)
        return [JobRow(*r) for r in rows]

    def active_job(self, name: str, instance: str) -> JobRow | None:
        """The instance's newest job, when it is still running."""
        job = self.last_job(name, instance)
        return job if job is not None and job.active else None

    def last_job(self, name: str, instance: str) -> JobRow | None:
        """The instance's newest job, whatever its status."""
        row = self._one(
            f"SELECT {_JOB} FROM jobs WHERE deployment = ? AND instance = ? ORDER BY id DESC "
            "LIMIT 1",
            (name, instance),
        )
        return None if row is None else JobRow(*row)

    def update_job(self, job: int, *, status: str | None = None, detail: str | None = None) -> None:
        if status is not None and status != JOB_RUNNING and status not in JOB_ENDS:
            raise ValueError(f"job status {status!r} is not one of {sorted(JOB_ENDS)}")
        with self._tx() as c:
            if detail is not None:
                c.execute("UPDATE jobs SET detail = ? WHERE id = ?", (detail, job))
            if status is not None:
                ended = None if status == JOB_RUNNING else time.time()
                c.execute(
                    "UPDATE jobs SET status = ?, ended = ? WHERE id = ?", (status, ended, job)
                )

    def operations(self, name: str, run_id: int | None = None) -> list[OperationRow]:
        if run_id is None:
            sql, params = "deployment = ?", (name,)
        else:
            sql, params = "deployment = ? AND run_id = ?", (name, run_id)
        rows = self._all(f"SELECT {_OPERATION} FROM operations WHERE {sql} ORDER BY id", params)
        return [_operation(r) for r in rows]

    def last_operation(self, name: str, step: str, instance: str) -> OperationRow | None:
        """The newest record of a step's operation on an instance (one indexed look-up, not a
        read of the deployment's whole history)."""
        row = self._one(
            f"SELECT {_OPERATION} FROM operations WHERE deployment = ? AND step = ? "
            "AND instance = ? ORDER BY id DESC LIMIT 1",
            (name, step, instance),
        )
        return None if row is None else _operation(row)

    def operation(self, op_id: int) -> OperationRow | None:
        row = self._one(f"SELECT {_OPERATION} FROM operations WHERE id = ?", (op_id,))
        return None if row is None else _operation(row)

    def log_path(self, name: str, op_id: int) -> Path:
        """Where the executor writes the operation's full output; the folder is created."""
        return self._dir("deployments", folder_name(name), "logs") / f"{int(op_id)}.log"

    def artifacts_dir(self, name: str, op_id: int) -> Path:
        """The operation's folder of records (stdout, stderr, rc, status, task.json; see
        ``orch.engine.artifacts``). Nothing is created: the engine makes it 0700."""
        return self.root.resolve() / "deployments" / folder_name(name) / "runs" / str(int(op_id))

    # -- steps done -------------------------------------------------------------------------

    def done_steps(self, name: str, plan_kind: str) -> set[str]:
        rows = self._all(
            "SELECT step FROM done_steps WHERE deployment = ? AND plan_kind = ?", (name, plan_kind)
        )
        return {r[0] for r in rows}

    def mark_step_done(
        self,
        name: str,
        plan_kind: str,
        step: str,
        instance_updates: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """For steps without an operation (state changes): the updates and the mark, atomically."""
        with self._tx() as c:
            if instance_updates:
                self._apply(c, name, instance_updates)
            self._done(c, name, plan_kind, step, time.time())

    @staticmethod
    def _done(c: sqlite3.Connection, name: str, plan_kind: str, step: str, now: float) -> None:
        c.execute(
            "INSERT OR REPLACE INTO done_steps (deployment, plan_kind, step, time) "
            "VALUES (?, ?, ?, ?)",
            (name, plan_kind, step, now),
        )

    def unmark_step_done(self, name: str, plan_kind: str, step: str) -> None:
        """The step runs again on resume (a job that failed is submitted again)."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                (name, plan_kind, step),
            )

    def unmark_steps_done(self, name: str, plan_kind: str, steps: set[str]) -> None:
        """These steps run again on the next run of that kind (an update's re-runs)."""
        with self._tx() as c:
            c.executemany(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                [(name, plan_kind, step) for step in sorted(steps)],
            )

    def forget_instances(self, name: str, reset: set[str], remove: set[str]) -> None:
        """After an update deleted instances: ``reset`` ones start again from scratch (state
        initial, no attributes, their deploy steps not done), ``remove`` ones are gone; the
        relationships and steps involving either go too. All or nothing."""
        gone = reset | remove

        def involved(key: str) -> bool:
            owner = key.split(":", 1)[0]
            source, _, rest = owner.partition(">")
            return source in gone or rest.split("#", 1)[0] in gone

        with self._tx() as c:
            steps = c.execute(
                "SELECT plan_kind, step FROM done_steps WHERE deployment = ?", (name,)
            ).fetchall()
            c.executemany(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ? AND step = ?",
                [(name, kind, step) for kind, step in steps if involved(step)],
            )
            links = c.execute("SELECT id FROM links WHERE deployment = ?", (name,)).fetchall()
            c.executemany(
                "DELETE FROM links WHERE deployment = ? AND id = ?",
                [(name, link) for (link,) in links if involved(link)],
            )
            c.executemany(
                "UPDATE instances SET state = ?, attributes = '{}' WHERE deployment = ? AND id = ?",
                [(INITIAL_STATE, name, instance) for instance in sorted(reset)],
            )
            c.executemany(
                "DELETE FROM instances WHERE deployment = ? AND id = ?",
                [(name, instance) for instance in sorted(remove)],
            )

    def clear_done_steps(self, name: str, plan_kind: str) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM done_steps WHERE deployment = ? AND plan_kind = ?", (name, plan_kind)
            )

    # -- events -----------------------------------------------------------------------------

    def add_event(
        self,
        name: str,
        run_id: int | None,
        kind: str,
        *,
        node: str | None = None,
        instance: str | None = None,
        step: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int:
        params = (name, run_id, time.time(), kind, node, instance, step, message, _dump(data or {}))
        with self._tx() as c:
            cursor = c.execute(
                "INSERT INTO events (deployment, run_id, time, kind, node, instance, step, "
                "message, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        return int(cursor.lastrowid or 0)

    def last_event_time(self, run_id: int) -> float | None:
        """When the run recorded its last event (the last sign of life of a run that died)."""
        row = self._one("SELECT max(time) FROM events WHERE run_id = ?", (run_id,))
        return None if row is None or row[0] is None else float(row[0])

    def events(self, name: str, after_id: int = 0, limit: int | None = None) -> list[EventRow]:
        """Events with an id above ``after_id``, oldest first: a follower passes its last id."""
        rows = self._all(
            f"SELECT {_EVENT} FROM events WHERE deployment = ? AND id > ? ORDER BY id LIMIT ?",
            (name, after_id, -1 if limit is None else limit),
        )
        return [_event(r) for r in rows]
