"""Job watches: a job's run operation is called again at the node's poll interval until the
job ends. Between two polls a watch takes no worker; it sleeps here until it is due. Executors
that batch their status queries (``polls_in_rounds``) are polled in common rounds, so that one
query per site answers for all of its jobs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from orch.engine import jobs
from orch.engine.recorder import Recorder
from orch.engine.runs import EngineOptions, Running
from orch.executors.base import JobExecutor, OperationResult, polls_in_rounds


class Poller:
    def __init__(self, recorder: Recorder, options: EngineOptions, running: dict[str, Running]):
        self.recorder = recorder
        self.store = recorder.store
        self.options = options
        self.running = running
        """The engine's running operations (watches included), by step."""
        self.sleeping: dict[str, float] = {}
        """Running job watches between two polls: step -> when to poll again (monotonic)."""

    def active(self) -> int:
        """Operations running now (job watches between two polls do not take a worker)."""
        return len(self.running) - len(self.sleeping)

    def first_round(self, running: Running) -> bool:
        """A job's first poll, for executors that poll in rounds: at the next round (True);
        False for the others, whose first poll is now."""
        if not polls_in_rounds(running.executor):
            return False
        assert isinstance(running.executor, JobExecutor)  # what polls_in_rounds says
        running.executor.expect(running.task)  # the site's next status command includes it
        self.sleeping[running.step.id] = self.next_round(running)
        return True

    def next_poll(self) -> float | None:
        """Seconds until the next poll is due (None: no job is watched)."""
        if not self.sleeping:
            return None
        return max(0.0, min(self.sleeping.values()) - time.monotonic())

    def poll_due(self, submit: Callable[[Running], None]) -> None:
        """Hand the watches that are due to ``submit`` (a worker runs them)."""
        now = time.monotonic()
        for step_id, due in sorted(self.sleeping.items(), key=lambda item: item[1]):
            if due <= now:
                del self.sleeping[step_id]
                running = self.running[step_id]
                running.due = due
                submit(running)

    def watched(self, running: Running, result: OperationResult) -> OperationResult | None:
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
                self.recorder.emit(
                    self.recorder.event(
                        "message",
                        running.step,
                        f"job {job.job_id} of {running.step.instance} is {reported}",
                        {"job_id": job.job_id, "job_status": reported},
                    ),
                    store=True,
                )
            self.sleeping[running.step.id] = self.next_round(running)
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

    def next_round(self, running: Running) -> float:
        """When to poll a job next: one interval from now, or, for executors that batch their
        status queries, the next multiple of the interval, so that every job of a site with
        that interval is due at the same instant and one query answers for all of them."""
        interval = jobs.poll_interval(
            self.recorder.model.nodes[running.step.node], self.options.poll_interval
        )
        now = time.monotonic()
        if not polls_in_rounds(running.executor):
            return now + interval
        return (now // interval + 1) * interval

    def leave_jobs_running(self) -> None:
        """Stopping: job watches between polls end now, their jobs go on where they run."""
        for step_id in list(self.sleeping):
            del self.sleeping[step_id]
            running = self.running.pop(step_id)
            job = running.job
            assert job is not None
            message = (
                f"job {job.job_id} is still running on {running.task.host.describe()}: run the "
                f"same command again to watch it, or `orch cancel {self.recorder.name}` to "
                "cancel it"
            )
            self.recorder.left_running(running, message)
