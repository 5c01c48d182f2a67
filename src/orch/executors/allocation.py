"""Held Slurm allocations (``orch.nodes.SlurmAllocation``): ``Standard.create`` acquires the
resources with ``salloc --no-shell`` (which returns once Slurm granted them), ``Standard.delete``
releases them with ``scancel``. Jobs hosted on the allocation run as its steps
(``slurm_steps``).

The allocation carries the execution id in its comment, as batch jobs do: a create that was
interrupted after Slurm took the request (Ctrl-C, kill -9, a timeout) finds that allocation
again instead of asking twice, and a create that gives up releases what it asked for, so that
nothing stays held that orch does not know of.
"""

from __future__ import annotations

import datetime
import re
import time

from orch.executors.base import (
    EXECUTION_AGAIN_ENV,
    TAIL_LINES,
    OperationResult,
    RunContext,
    Task,
)
from orch.executors.batch import site_environment
from orch.executors.builtin import accepts_builtin
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import SLURM, translate
from orch.executors.schedulers import ScriptError
from orch.executors.slurm_scheduler import SLURM_SCHEDULER
from orch.executors.slurm_script import resource_options
from orch.remote import quote_path
from orch.transport.base import Transport, TransportError

_GRANTED = re.compile(r"[Gg]ranted job allocation (\d+)")
_ASKED = re.compile(r"job allocation (\d+)")
_EXECUTION = re.compile(r"^[0-9a-f]{1,64}$")


class AllocationExecutor:
    name = "allocation"
    kinds = "orch.artifacts.Builtin 'allocation' (held Slurm allocations: salloc, scancel)"
    tracks_executions = ("create",)
    """The engine gives create an execution id (the allocation carries it, as a job does)."""

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        action = {"create": self.acquire, "delete": self.release}.get(task.operation)
        if action is None:
            return OperationResult("ok", rc=0)  # configure, start, stop: nothing to do
        try:
            _check_site(task)
            return action(task, context)
        except ScriptError as exc:
            return OperationResult("failed", message=str(exc), started=False, fixed=True)
        except TransportError as exc:
            return OperationResult("failed", message=f"{task.host.describe()}: {exc}",
                                   started=exc.started)  # fmt: skip

    # ------------------------------------------------------------------ create
    def acquire(self, task: Task, context: RunContext) -> OperationResult:
        transport = context.transport(task.host)
        job = JobSettings.of(task)
        execution = job.execution if job.execution and _EXECUTION.match(job.execution) else ""
        if execution and task.environment.get(EXECUTION_AGAIN_ENV):
            found = self._find(task, transport, execution)
            if found:
                context.log("stdout", f"found allocation {found} of this create's earlier "
                            "attempt: keeping it (not asking again)")  # fmt: skip
                return self._granted(task, transport, found)
        options = " ".join(quote_path(o) for o in [f"--job-name={job.job_name}",
                                                   *resource_options(job)])  # fmt: skip
        context.log("stdout", f"salloc --no-shell {options}")
        result = transport.run(
            f"salloc --no-shell {options} 2>&1", env=site_environment(task),
            timeout=task.timeout or 3600, cancel=context.cancel, on_line=context.log,
        )  # fmt: skip
        lines = (result.stdout or "").splitlines()[-TAIL_LINES:]
        granted = _GRANTED.search(result.stdout or "")
        if result.rc == 0 and granted and not (result.cancelled or result.timed_out):
            return self._granted(task, transport, granted.group(1))
        asked = _ASKED.search(result.stdout or "")
        leftover = asked.group(1) if asked else (self._find(task, transport, execution)
                                                 if execution else None)  # fmt: skip
        if leftover:  # asked, never granted to us: nothing may stay queued or held
            transport.run(f"scancel {leftover}", env=site_environment(task), timeout=60)
        if result.cancelled or result.timed_out:
            limit = task.timeout or 3600
            why = "cancelled" if result.cancelled else f"not granted in {limit:.0f} s"
            return OperationResult(
                "cancelled" if result.cancelled else "timeout", rc=result.rc,
                stdout_tail=lines, message=f"allocation {why} on {task.host.describe()}"
                + (f"; released the request {leftover}" if leftover else ""),
            )  # fmt: skip
        last = next((line for line in reversed(lines) if line.strip()), "")
        return OperationResult(
            "failed", rc=result.rc, stdout_tail=lines, fixed="error" in last.lower(),
            message=f"salloc on {task.host.describe()} exited {result.rc}"
            + (f": {last.strip()}" if last else ""),
        )  # fmt: skip

    def _find(self, task: Task, transport: Transport, execution: str) -> str | None:
        result = transport.run(SLURM_SCHEDULER.find_command(execution),
                               env=site_environment(task), timeout=60)  # fmt: skip
        found = (result.stdout or "").strip().split("\n")[0].strip()
        return found if found.isdigit() else None

    def _granted(self, task: Task, transport: Transport, allocation: str) -> OperationResult:
        """The granted allocation's nodes, time limit and end, as attributes."""
        result = transport.run(f"squeue -h -j {allocation} -o '%T|%N|%l|%L'",
                               env=site_environment(task), timeout=60)  # fmt: skip
        row = ((result.stdout or "").strip().splitlines() or [""])[0].split("|")
        state, nodes, limit, left = [*row, "", "", ""][:4]
        outputs = {"allocation_id": allocation, "node_list": nodes, "time_limit": limit,
                   "ends_at": ends_at(left)}  # fmt: skip
        if state and translate(SLURM, state).ended:
            return OperationResult("failed", outputs=outputs,
                                   message=f"allocation {allocation} ended at once ({state})")
        return OperationResult(
            "ok", rc=0, outputs=outputs,
            stdout_tail=[f"allocation {allocation} granted: {nodes or '?'}, time limit "
                         f"{limit or '?'}"],
        )  # fmt: skip

    # ------------------------------------------------------------------ delete
    def release(self, task: Task, context: RunContext) -> OperationResult:
        allocation = str(task.inputs.get("allocation_id") or "").strip()
        if not allocation.isdigit():
            context.log("stdout", "no allocation held: nothing to release")
            return OperationResult("ok", rc=0, outputs={"allocation_id": ""})
        transport = context.transport(task.host)
        result = transport.run(f"scancel {allocation}", env=site_environment(task),
                               timeout=task.timeout or 120)  # fmt: skip
        err = (result.stderr or "").splitlines()[-TAIL_LINES:]
        if result.rc != 0 and not SLURM_SCHEDULER.already_gone(result.stderr or ""):
            return OperationResult(
                "failed", rc=result.rc, stderr_tail=err,
                message=f"scancel {allocation} on {task.host.describe()} exited {result.rc}"
                + (f": {err[-1]}" if err else ""),
            )  # fmt: skip
        context.log("stdout", f"released allocation {allocation}")
        return OperationResult("ok", rc=0, outputs={"allocation_id": ""})


def _check_site(task: Task) -> None:
    scheduler = getattr(task.site, "scheduler", None) or "slurm"
    if scheduler != "slurm":
        site = getattr(task.site, "name", task.host.name)
        raise ScriptError(f"{task.node}: site {site} runs {scheduler}; allocations are "
                          "Slurm's (salloc): use plain jobs there")  # fmt: skip


def ends_at(left: str, now: float | None = None) -> str:
    """When an allocation with ``left`` (squeue's %L: [days-]hh:mm:ss) to go ends, in UTC ISO
    8601; empty when unlimited or unreadable."""
    seconds = slurm_seconds(left)
    if seconds is None:
        return ""
    end = (time.time() if now is None else now) + seconds
    moment = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def slurm_seconds(text: str) -> int | None:
    """Seconds of a Slurm duration (``mm:ss``, ``hh:mm:ss``, ``d-hh:mm:ss``); None for
    UNLIMITED, NOT_SET or anything else."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if match is None:
        return None
    days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs
