"""Batch jobs (``orch.nodes.SlurmJob`` and its MPI and Apptainer kinds) on whatever scheduler
the site runs (sites.yaml ``scheduler``: slurm, sge, pbs), the way a user would at the login node,
over the site's one SSH connection. The scheduler's words come from ``schedulers``.

- submit: one command writes the batch script into the job's folder and submits it; the job
  id is the operation's TOSCA_JOB_ID, which the engine stores at once. What the submit printed
  is kept beside the script (``.orch-<execution>.submit``) and the job carries the execution id
  (Slurm's comment, SGE's context): an attempt that was interrupted after the scheduler took
  the job (Ctrl-C, kill -9) finds that job again instead of submitting it twice.
- run: reports the job's state; the engine calls it once per poll round, and all jobs of a site
  share one status command per round (``job_monitor``). When the job ended, its state, exit
  code, elapsed time and nodes become outputs (mapped to attributes), and the last lines of its
  output reach the operation's log (``orch logs``). A scheduler that does not answer (its
  controller is down) is asked again each round, for up to ``SCHEDULER_DOWN_LIMIT``.
- cancel: the scheduler's cancel command.
- delete (Standard, at undeploy): with ``remove_on_undeploy``, removes the job's folder when it
  is orch's default one, else only the files orch named in the node's own ``workdir``.

Subclasses change how a job is submitted (``submission``): PyCOMPSs' ``enqueue_compss`` writes
its own batch script, and the rest is the same.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any

from orch.executors.base import (
    EXECUTION_AGAIN_ENV,
    EXECUTION_ENV,
    TAIL_LINES,
    Host,
    OperationResult,
    RunContext,
    Task,
)
from orch.executors.batch_script import batch_script
from orch.executors.builtin import (
    accepts_builtin,
    deployment_dir,
    node_dir,
    quote_path,
    remove_if_empty,
    safe_segment,
)
from orch.executors.coscheduled_submit import component_of, endpoint_outputs, submit_group
from orch.executors.group_members import members_of
from orch.executors.job_monitor import SiteMonitor
from orch.executors.job_settings import JobSettings
from orch.executors.jobstate import JOB_ID, JOB_STATUS, JobState, UnknownStates, translate
from orch.executors.schedulers import (
    JobFiles,
    JobInfo,
    Scheduler,
    ScriptError,
    StatusError,
    scheduler_of,
)
from orch.executors.slurm_steps import (
    SLURM_STEPS,
    STEP_START_LIMIT,
    allocation_of,
    is_step,
    step_script,
    step_submission,
)
from orch.transport.base import Transport, TransportError

JOB_ID_FORM = re.compile(r"^\d+(?:[_+]\d+)?(?:\.[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
"""A job id as schedulers print them: 123, 123_4 (an array task), 123+1 (a heterogeneous
component), 123.server (PBS): never anything the shell would read."""
_EXECUTION_FORM = re.compile(r"^[0-9a-f]{1,64}$")
SCHEDULER_DOWN_LIMIT = 3600.0
"""Seconds a job is watched while its scheduler does not answer, before the watch fails."""


class BatchJobExecutor:
    name = "batch"
    kinds = "batch jobs (submit, run, cancel) on the site's scheduler (slurm, sge, pbs)"
    polls_in_rounds = True
    """The engine aligns this executor's polls so that one status command serves a round."""
    names_job_files = True
    """orch writes the batch script and names the job's output files (undeploy can tell them
    apart in a folder of the user's); enqueue_compss names its own."""

    def __init__(self) -> None:
        self._monitors: dict[tuple[Any, ...], SiteMonitor] = {}
        self._unknown = UnknownStates()
        self._down_since: dict[tuple[Any, ...], float] = {}
        self._missing_since: dict[str, float] = {}
        self._lock = threading.Lock()

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def monitor(self, host: Host, scheduler: Scheduler) -> SiteMonitor:
        """The site's monitor (one per login: user, address, port; and scheduler)."""
        with self._lock:
            key = (*host.key, scheduler.name)
            if key not in self._monitors:
                from orch.executors.shared_monitor import SharedSiteMonitor, shared_folder

                folder = shared_folder()  # orch serve's executions share their rounds
                self._monitors[key] = (
                    SiteMonitor(scheduler) if folder is None
                    else SharedSiteMonitor(scheduler, folder, key)
                )  # fmt: skip
            return self._monitors[key]

    def status_rounds(self) -> int:
        """Status commands run so far, all sites together."""
        with self._lock:
            return sum(m.rounds for m in self._monitors.values())

    def expect(self, task: Task) -> None:
        """Called by the engine when a job's watch starts (no I/O): its site's next round asks
        for it, whichever poll comes first."""
        job_id = _job_id(task)
        if task.operation == "run" and job_id is not None:
            with contextlib.suppress(ScriptError):  # the watch itself says why
                self.monitor(task.host, self.scheduler(task)).expect(job_id)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        """One Runnable (or Standard.delete) operation: the engine masks what it logs and
        returns, and starts nothing once cancelled."""
        action = {"submit": self.submit, "run": self.watch, "cancel": self.cancel,
                  "delete": self.remove}.get(task.operation)  # fmt: skip
        if action is None:
            return OperationResult(
                "failed",
                message=f"the {self.name} executor runs submit, run and cancel "
                f"(Runnable) and delete, not {task.interface}.{task.operation}",
                started=False,
            )
        try:
            return action(task, context)
        except ScriptError as exc:
            return OperationResult("failed", message=str(exc), started=False, fixed=True)
        except (TransportError, StatusError) as exc:
            return OperationResult(
                "failed", message=f"{task.host.describe()}: {exc}", started=exc.started
            )

    def check_active(self, tasks: list[Task], context: RunContext) -> dict[str, OperationResult]:
        """Each job's report, keyed by job id: one status command per site for all of them."""
        for task in tasks:
            self.expect(task)
        return {str(_job_id(task)): self.run(task, context) for task in tasks}

    # ------------------------------------------------------------------ submit
    def files(self, task: Task, transport: Transport,
              scheduler: Scheduler | None = None) -> JobFiles:  # fmt: skip
        suffix = (scheduler or self.scheduler(task)).script_suffix
        return JobFiles(node_dir(task, transport), safe_segment(task.node), suffix)

    def scheduler(self, task: Task, submitting: bool = False) -> Scheduler:
        """The site's scheduler; Slurm's steps for a job in a held allocation (its step's
        id says so once submitted, even after the allocation is gone)."""
        job_id = None if submitting else _job_id(task)
        if job_id is not None and is_step(job_id) and task.group is not None:
            site = scheduler_of(task)  # a co-scheduled member J.K: a step, or part of job J
            return SLURM_STEPS if site.name == "slurm" else members_of(site)
        if (job_id is not None and is_step(job_id)) or allocation_of(task) is not None:
            return SLURM_STEPS
        return scheduler_of(task)

    def submission(self, task: Task, files: JobFiles) -> tuple[str, bytes | None]:
        """The command that submits the job from its folder, and what it reads on stdin."""
        allocation = allocation_of(task)
        if allocation is not None:
            job = JobSettings.of(task)
            wait = min(STEP_START_LIMIT, max(5.0, (task.timeout or 300) - 10))
            return (step_submission(job, files, allocation, wait), step_script(job).encode())
        scheduler = self.scheduler(task)
        script = batch_script(JobSettings.of(task), files, scheduler).encode()
        name = quote_path(files.script)
        # 0600 (a new file: an old one keeps its mode): its exports may hold secrets
        return (f"(umask 077 && rm -f -- {name} && cat > {name}) && "
                f"{scheduler.submit_command(name)}", script)  # fmt: skip

    def submit(self, task: Task, context: RunContext) -> OperationResult:
        if task.group is not None and self.names_job_files:
            return self._member(task, context, task.group)
        transport = context.transport(task.host)
        scheduler = self.scheduler(task, submitting=True)
        files = self.files(task, transport, scheduler)
        folder = quote_path(files.folder)
        execution = task.environment.get(EXECUTION_ENV, "")
        record = ""
        if _EXECUTION_FORM.match(execution):
            record = quote_path(f"{files.folder}/.orch-{execution}.submit")
            if task.environment.get(EXECUTION_AGAIN_ENV):
                found = self._find(task, context, scheduler, files, record, execution)
                if found is not None:
                    return found
        command, stdin = self.submission(task, files)
        if record:  # what the submit prints stays on the site, even if orch is killed now
            command = f"{{ {command}; }} > {record}; orch_rc=$?; cat {record}; exit $orch_rc"
        result = transport.run(
            f"mkdir -p {folder} && cd {folder} && {command}",
            env=site_environment(task),
            stdin=stdin,
            timeout=task.timeout or 300,
            cancel=context.cancel,
            on_line=context.log,
        )
        out, err = _lines(result.stdout), _lines(result.stderr)
        if result.cancelled or result.timed_out:
            status = "cancelled" if result.cancelled else "timeout"
            return OperationResult(status, rc=result.rc, stdout_tail=out, stderr_tail=err,
                                   message=f"submission {status} on {task.host.describe()}")
        job_id = scheduler.submitted_id(result.stdout or "")
        if result.rc != 0 or job_id is None:
            why = (f"exited {result.rc}" if result.rc != 0
                   else f"printed no job id ({scheduler.title})")  # fmt: skip
            last = (err or out or [""])[-1]
            return OperationResult(
                "failed", rc=result.rc, stdout_tail=out, stderr_tail=err,
                message=f"submitting {task.node} on {task.host.describe()} {why}"
                + (f": {last}" if last else ""),
            )  # fmt: skip
        return self._submitted(job_id, files, out, err)

    def _member(self, task: Task, context: RunContext, group: Any) -> OperationResult:
        """A co-scheduled member's submit: the leader's submits the group's one job, the
        others' (which the plan runs after it) take their component of that job."""
        if task.node == group.leader:
            found = submit_group(self, task, context, group)
        else:
            found = component_of(self, task, context, group)
        if isinstance(found, OperationResult):
            return found
        job_id, files = found[task.node]
        context.log("stdout", f"{task.node} is job {job_id}, a component of group "
                    f"{group.name}'s job on {task.host.describe()}")  # fmt: skip
        return self._submitted(job_id, files, [], [])

    def _find(self, task: Task, context: RunContext, scheduler: Scheduler, files: JobFiles,
              record: str, execution: str) -> OperationResult | None:  # fmt: skip
        """The job an earlier, interrupted attempt of this submit started, if any."""
        transport = context.transport(task.host)
        result = transport.run(
            f"cat {record} 2>/dev/null; echo ORCH-FIND; {scheduler.find_command(execution)}",
            env=site_environment(task), timeout=task.timeout or 120, cancel=context.cancel,
        )  # fmt: skip
        before, _, found = (result.stdout or "").partition("ORCH-FIND")
        job_id = scheduler.submitted_id(before) or found.strip().split("\n")[0].strip()
        if not job_id or not JOB_ID_FORM.match(job_id):
            return None
        context.log("stdout", f"found job {job_id} of this submit's earlier attempt: watching "
                    "it (not submitting again)")  # fmt: skip
        return self._submitted(job_id, files, [], [])

    @staticmethod
    def _submitted(job_id: str, files: JobFiles, out: list[str], err: list[str]
                   ) -> OperationResult:  # fmt: skip
        return OperationResult(
            "ok", rc=0, stdout_tail=out, stderr_tail=err,
            outputs={
                JOB_ID: job_id, "work_dir": files.folder, "output": files.output(job_id),
            },
        )  # fmt: skip

    # ------------------------------------------------------------------ run (watch)
    def watch(self, task: Task, context: RunContext) -> OperationResult:
        job_id = _job_id(task)
        if job_id is None:
            return OperationResult(
                "failed", message=f"{task.node}: no valid {JOB_ID} to watch", started=False
            )
        scheduler = self.scheduler(task)
        transport = context.transport(task.host)
        files = self.files(task, transport, scheduler)
        monitor = self.monitor(task.host, scheduler)
        site = (*task.host.key, scheduler.name)
        try:
            info = monitor.status(
                job_id, files, transport, due=context.poll_due, cancel=context.cancel,
                env=site_environment(task),
            )
        except StatusError as exc:
            if not exc.unavailable:
                raise
            return self._scheduler_down(task, context, scheduler, site, str(exc))
        with self._lock:
            self._down_since.pop(site, None)
        if info.state == "UNKNOWN" and self._accounting_lag(job_id, scheduler):
            return OperationResult("ok", outputs={JOB_STATUS: "LEAVING"}, started=True)
        if not info.ended:
            word = info.state.split()[0] if info.state.split() else ""
            if info.reason:
                monitor.forget(job_id)
                self._clean_up_failed(task, context, scheduler, job_id)
                return OperationResult(
                    "failed", outputs={JOB_STATUS: word},
                    message=f"job {job_id} can never start as asked: {scheduler.title} says "
                    f"{info.reason}; orch cancelled it: change the job's resources",
                )  # fmt: skip
            if translate(scheduler.table, word) is JobState.UNKNOWN:
                what, give_up = self._unknown.seen(job_id, word, scheduler.title, scheduler.doc)
                context.log("stderr", what)
                if give_up:
                    monitor.forget(job_id)
                    return OperationResult("failed", outputs={JOB_STATUS: word}, message=what)
            else:
                self._unknown.known(job_id)
            return OperationResult(
                "ok", outputs={JOB_STATUS: word, "node_list": info.node_list,
                               **endpoint_outputs(info)}, started=True,
            )  # fmt: skip
        monitor.forget(job_id)
        for line in info.stdout_tail:
            context.log("stdout", line)
        for line in info.stderr_tail:
            context.log("stderr", line)
        if info.reason and info.state.startswith("FAILED") and scheduler is not SLURM_STEPS:
            self._clean_up_failed(task, context, scheduler, job_id)
        return self._ended(task, scheduler, job_id, files, info)

    def _accounting_lag(self, job_id: str, scheduler: Scheduler) -> bool:
        """Whether a job the scheduler forgot, with no accounting record nor exit file yet, may
        still get them: SGE writes its accounting some seconds after a job leaves qstat."""
        now = time.monotonic()
        with self._lock:
            since = self._missing_since.setdefault(job_id, now)
        return now - since < scheduler.accounting_lag

    def _scheduler_down(self, task: Task, context: RunContext, scheduler: Scheduler,
                        site: tuple[Any, ...], why: str) -> OperationResult:  # fmt: skip
        """The scheduler did not answer: the job is asked for again next round, until
        ``SCHEDULER_DOWN_LIMIT``."""
        now = time.monotonic()
        with self._lock:
            since = self._down_since.setdefault(site, now)
        waited = now - since
        message = (f"{scheduler.title} on {task.host.describe()} does not answer ({why}); "
                   f"asking again next round ({waited:.0f} s so far)")  # fmt: skip
        context.log("stderr", message)
        if waited >= SCHEDULER_DOWN_LIMIT:
            return OperationResult("failed", message=f"{message}: giving up", started=True)
        previous = task.environment.get(JOB_STATUS) or "UNREACHABLE"
        return OperationResult("ok", outputs={JOB_STATUS: previous}, started=True)

    def _clean_up_failed(self, task: Task, context: RunContext, scheduler: Scheduler,
                         job_id: str) -> None:  # fmt: skip
        """A job that can never run (SGE's Eqw, a Slurm reason that never clears) is deleted:
        it would wait for ever, holding its place in the queue. A co-scheduled member's
        takes its whole group's job with it (the others would never start either)."""
        ids = [job_id]
        leader_job = getattr(task.group, "leader_job", None) or ""
        if task.group is not None and is_step(job_id):  # the steps' one job
            ids = [job_id.split(".")[0]]
        elif task.node != getattr(task.group, "leader", task.node):
            ids += [leader_job] if JOB_ID_FORM.match(leader_job) else []
        result = context.transport(task.host).run(
            scheduler.cancel_command(ids), env=site_environment(task), timeout=60
        )
        if result.rc == 0:
            context.log("stderr", f"cancelled job {' '.join(ids)}, which {scheduler.title} "
                        "would never run")  # fmt: skip

    def _ended(self, task: Task, scheduler: Scheduler, job_id: str, files: JobFiles,
               info: JobInfo) -> OperationResult:  # fmt: skip
        state = info.state.split()[0]
        outputs: dict[str, Any] = {
            JOB_STATUS: "FAILED" if state == "UNKNOWN" else state,
            "elapsed": info.elapsed,
            "node_list": info.node_list,
        }
        if info.exit_code is not None:
            outputs["exit_code"] = info.exit_code
        if info.usage:
            outputs["usage"] = dict(info.usage)
        outputs.update(endpoint_outputs(info))
        where = f"output in {files.output(job_id)}"
        if state == "UNKNOWN":
            message = (
                f"{scheduler.title} no longer knows job {job_id} and it left no exit status: it "
                f"may never have run; {where}"
            )
        elif translate(scheduler.table, state) is not JobState.COMPLETED or info.exit_code:
            code = f"exit code {info.exit_code}" if info.exit_code is not None else "no exit code"
            message = f"{code}; {where}" + (f"; {info.reason}" if info.reason else "")
        else:
            message = ""
        return OperationResult(
            "ok",
            rc=info.exit_code,
            outputs=outputs,
            stdout_tail=info.stdout_tail,
            stderr_tail=info.stderr_tail,
            message=message,
        )

    # ------------------------------------------------------------------ cancel
    def cancel(self, task: Task, context: RunContext) -> OperationResult:
        job_id = _job_id(task)
        if job_id is None:
            return OperationResult("ok", message="no job to cancel")
        scheduler = self.scheduler(task)
        transport = context.transport(task.host)
        result = transport.run(scheduler.cancel_command([job_id]), env=site_environment(task),
                               timeout=task.timeout or 120)  # fmt: skip
        self.monitor(task.host, scheduler).forget(job_id)
        err = _lines(result.stderr)
        if result.rc != 0 and not scheduler.already_gone(result.stderr or ""):
            return OperationResult(
                "failed", rc=result.rc, stderr_tail=err,
                message=f"{scheduler.cancel_command([job_id])} on {task.host.describe()} "
                f"exited {result.rc}" + (f": {err[-1]}" if err else ""),
            )  # fmt: skip
        context.log("stdout", f"cancelled {scheduler.title} job {job_id}")
        return OperationResult("ok", rc=0, outputs={JOB_STATUS: "CANCELLED"})

    # ------------------------------------------------------------------ delete (undeploy)
    def remove(self, task: Task, context: RunContext) -> OperationResult:
        """The job's files, when ``remove_on_undeploy``: its whole folder when it is orch's
        ``<work_dir>/<deployment>/<node>`` (then the deployment's folder too once empty);
        in a ``workdir`` of the node's own, only the files orch named there."""
        transport = context.transport(task.host)
        files = self.files(task, transport)
        if not task.properties.get("remove_on_undeploy"):
            context.log("stdout", f"kept {task.host.describe()}:{files.folder} "
                        "(remove_on_undeploy is false)")  # fmt: skip
            return OperationResult("ok", rc=0)
        if task.properties.get("workdir") and not self.names_job_files:
            context.log("stdout", f"kept {task.host.describe()}:{files.folder}: the node's "
                        "own workdir (enqueue_compss' files are not told from others)")  # fmt: skip
            return OperationResult("ok", rc=0)
        if task.properties.get("workdir"):
            prefix = quote_path(files.exit_file(""))  # <folder>/<stem>-, then any job id
            globbed = [f"{prefix}*{ext}" for ext in (".out", ".err", ".exit")]
            records = quote_path(f"{files.folder}/.orch-") + "*.submit"
            command = "rm -f -- " + " ".join([quote_path(files.script), *globbed, records])
            what = f"{files.stem} files in {files.folder}"
        else:
            command = (f"rm -rf -- {quote_path(files.folder)} || exit 1; "
                       + remove_if_empty(deployment_dir(task, transport)))  # fmt: skip
            what = files.folder
        result = transport.run(command, timeout=task.timeout or 120)
        if result.rc != 0:
            err = _lines(result.stderr)
            return OperationResult(
                "failed", rc=result.rc, stderr_tail=err,
                message=f"cannot remove {what} on {task.host.describe()}"
                + (f": {err[-1]}" if err else ""),
            )  # fmt: skip
        context.log("stdout", f"removed {task.host.describe()}:{what}")
        return OperationResult("ok", rc=0)


def site_environment(task: Task) -> dict[str, str] | None:
    """sites.yaml's ``environment``: exported for every command orch runs on the site (the
    scheduler's commands too: a site may need SLURM_CONF, SGE_ROOT or its PATH)."""
    variables = getattr(task.site, "environment", None) or {}
    return {str(k): str(v) for k, v in variables.items()} or None


def _job_id(task: Task) -> str | None:
    job_id = task.environment.get(JOB_ID, "").strip()
    return job_id if JOB_ID_FORM.match(job_id) else None


def _lines(text: str | None) -> list[str]:
    return (text or "").splitlines()[-TAIL_LINES:]
