"""Slurm jobs (``orch.nodes.SlurmJob`` and its MPI and Apptainer kinds), run the way a user
would at the login node, over the site's one SSH connection.

- submit: one command writes the batch script into the job's folder and runs ``sbatch``; the
  job id it prints (``Submitted batch job N``) is the operation's TOSCA_JOB_ID, which the engine
  stores at once.
- run: reports the job's state; the engine calls it once per poll round, and all jobs of a site
  share one status command per round (``slurm_monitor``). When the job ended, its state, exit
  code, elapsed time and nodes become outputs (mapped to attributes), and the last lines of its
  output reach the operation's log (``orch logs``).
- cancel: ``scancel``.
- delete (Standard, at undeploy): with ``remove_on_undeploy``, removes the job's folder when it
  is orch's default one, else only the files orch named in the node's own ``workdir``.

Subclasses change how a job is submitted (``submission``): PyCOMPSs' ``enqueue_compss`` writes
its own batch script, and the rest is the same.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any

from orch.executors.base import TAIL_LINES, Host, OperationResult, RunContext, Task
from orch.executors.builtin import (
    accepts_builtin,
    deployment_dir,
    node_dir,
    quote_path,
    remove_if_empty,
)
from orch.executors.jobstate import (
    JOB_ID,
    JOB_STATUS,
    SLURM,
    SLURM_DOC,
    JobState,
    UnknownStates,
    translate,
)
from orch.executors.masking import Masker
from orch.executors.slurm_monitor import JobInfo, SiteMonitor, StatusError
from orch.executors.slurm_script import JobFiles, ScriptError, batch_script, job_files
from orch.transport.base import Transport, TransportError

SUBMITTED = re.compile(r"Submitted batch job (\d+)")
JOB_ID_FORM = re.compile(r"^\d+(?:[_+]\d+)?$")


class SlurmExecutor:
    name = "slurm"
    kinds = "orch.artifacts.Builtin 'slurm' (Slurm batch jobs: submit, run, cancel)"
    polls_in_rounds = True
    """The engine aligns this executor's polls so that one status command serves a round."""
    names_job_files = True
    """orch writes the batch script and names the job's output files (undeploy can tell them
    apart in a folder of the user's); enqueue_compss names its own."""

    def __init__(self) -> None:
        self._monitors: dict[tuple[str, int, str], SiteMonitor] = {}
        self._unknown = UnknownStates()
        self._lock = threading.Lock()

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def monitor(self, host: Host) -> SiteMonitor:
        """The site's monitor (one per login: user, address, port)."""
        with self._lock:
            return self._monitors.setdefault(host.key, SiteMonitor())

    def status_rounds(self) -> int:
        """Status commands run so far, all sites together."""
        with self._lock:
            return sum(m.rounds for m in self._monitors.values())

    def expect(self, task: Task) -> None:
        """Called by the engine when a job's watch starts (no I/O): its site's next round asks
        for it, whichever poll comes first."""
        job_id = _job_id(task)
        if task.operation == "run" and job_id is not None:
            self.monitor(task.host).expect(job_id)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        """The operation, with secrets masked in what it logs and returns (a job's output may
        print them)."""
        mask = Masker(task.secret_values)
        masked = dataclasses.replace(context, log=mask.sink(context.log))
        return mask.result(self._run(task, masked))

    def _run(self, task: Task, context: RunContext) -> OperationResult:
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        actions = {"submit": self.submit, "run": self.watch, "cancel": self.cancel,
                   "delete": self.remove}  # fmt: skip
        action = actions.get(task.operation)
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
            return OperationResult("failed", message=str(exc), started=False)
        except TransportError as exc:
            return OperationResult(
                "failed", message=f"{task.host.describe()}: {exc}", started=exc.started
            )
        except StatusError as exc:
            return OperationResult(
                "failed", message=f"{task.host.describe()}: {exc}", started=exc.started
            )

    # ------------------------------------------------------------------ submit
    def files(self, task: Task, transport: Transport) -> JobFiles:
        return job_files(task, node_dir(task, transport))

    def submission(self, task: Task, files: JobFiles) -> tuple[str, bytes | None]:
        """The command that submits the job from its folder, and what it reads on stdin."""
        script = batch_script(task, files).encode()
        name = quote_path(files.script)
        # 0600 (a new file: an old one keeps its mode): its exports may hold secrets
        return f"(umask 077 && rm -f -- {name} && cat > {name}) && sbatch {name}", script

    def submit(self, task: Task, context: RunContext) -> OperationResult:
        transport = context.transport(task.host)
        files = self.files(task, transport)
        command, stdin = self.submission(task, files)
        folder = quote_path(files.folder)
        result = transport.run(
            f"mkdir -p {folder} && cd {folder} && {command}",
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
        found = SUBMITTED.search(result.stdout or "")
        if result.rc != 0 or found is None:
            why = f"exited {result.rc}" if result.rc != 0 else "printed no 'Submitted batch job N'"
            return OperationResult(
                "failed", rc=result.rc, stdout_tail=out, stderr_tail=err,
                message=f"submitting {task.node} on {task.host.describe()} {why}"
                + (f": {err[-1]}" if err else ""),
            )  # fmt: skip
        job_id = found.group(1)
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
        transport = context.transport(task.host)
        files = self.files(task, transport)
        monitor = self.monitor(task.host)
        info = monitor.status(
            job_id, files, transport, due=context.poll_due, cancel=context.cancel
        )
        if not info.ended:
            word = info.state.split()[0] if info.state.split() else ""
            if translate(SLURM, word) is JobState.UNKNOWN:
                what, give_up = self._unknown.seen(job_id, word, "Slurm", SLURM_DOC)
                context.log("stderr", what)
                if give_up:
                    monitor.forget(job_id)
                    return OperationResult("failed", outputs={JOB_STATUS: word}, message=what)
            else:
                self._unknown.known(job_id)
            return OperationResult(
                "ok",
                outputs={JOB_STATUS: word, "node_list": info.node_list},
                started=True,
            )
        monitor.forget(job_id)
        for line in info.stdout_tail:
            context.log("stdout", line)
        for line in info.stderr_tail:
            context.log("stderr", line)
        return self._ended(task, job_id, files, info)

    def _ended(self, task: Task, job_id: str, files: JobFiles, info: JobInfo) -> OperationResult:
        state = info.state.split()[0]
        outputs: dict[str, Any] = {
            JOB_STATUS: "FAILED" if state == "UNKNOWN" else state,
            "elapsed": info.elapsed,
            "node_list": info.node_list,
        }
        if info.exit_code is not None:
            outputs["exit_code"] = info.exit_code
        where = f"output in {files.output(job_id)}"
        if state == "UNKNOWN":
            message = (
                f"Slurm no longer knows job {job_id} and it left no exit status: it may never "
                f"have run; {where}"
            )
        elif state != "COMPLETED" or info.exit_code:
            code = f"exit code {info.exit_code}" if info.exit_code is not None else "no exit code"
            message = f"{code}; {where}"
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
        transport = context.transport(task.host)
        result = transport.run(f"scancel {job_id}", timeout=task.timeout or 120)
        self.monitor(task.host).forget(job_id)
        err = _lines(result.stderr)
        if result.rc != 0 and not any("Invalid job id" in line for line in err):
            return OperationResult(
                "failed", rc=result.rc, stderr_tail=err,
                message=f"scancel {job_id} on {task.host.describe()} exited {result.rc}"
                + (f": {err[-1]}" if err else ""),
            )  # fmt: skip
        context.log("stdout", f"cancelled Slurm job {job_id}")
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
            command = "rm -f -- " + " ".join([quote_path(files.script), *globbed])
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


def _job_id(task: Task) -> str | None:
    job_id = task.environment.get(JOB_ID, "").strip()
    return job_id if JOB_ID_FORM.match(job_id) else None


def _lines(text: str | None) -> list[str]:
    return (text or "").splitlines()[-TAIL_LINES:]
