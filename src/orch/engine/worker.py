"""One operation, in a worker thread: the executor, the operation's log file and its stdout and
stderr records, and nothing else (the scheduler's thread owns the store). What every executor
gets from the engine, plugins included: secrets masked in what it logs and returns (whatever it
masks itself), and nothing started once the operation is cancelled. Whatever happens, the
scheduler hears of the operation's end through the queue."""

from __future__ import annotations

from pathlib import Path

from orch.engine import artifacts
from orch.engine.inbox import Inbox
from orch.engine.runs import EngineOptions, Running
from orch.executors.base import OperationResult, RunContext, TransportProvider
from orch.executors.masking import Masker
from orch.state import Store


class Worker:
    def __init__(
        self, store: Store, deployment: str, options: EngineOptions,
        transport: TransportProvider, inbox: Inbox,
    ):  # fmt: skip
        self.store = store
        self.name = deployment
        self.options = options
        self.transport = transport
        self.inbox = inbox
        """Where the scheduler hears of lines ("line") and ends ("done")."""

    def work(self, running: Running, log_path: Path) -> None:
        """Runs in a worker thread: the executor, the log file, and nothing else. Whatever
        happens, the scheduler hears of the step's end (it would wait for ever otherwise)."""
        try:
            result = self.execute(running, log_path)
        except BaseException as exc:  # the log cannot be written, the interpreter is exiting...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result = OperationResult(
                "failed", message=f"orch could not run it: {type(exc).__name__}: {reason}"
            )
        self.inbox.put("done", (running.step.id, result))

    def execute(self, running: Running, log_path: Path) -> OperationResult:
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
                self.inbox.put("line", (step_id, stream, line))

            context = RunContext(
                transport=self.transport,
                cancel=running.cancel,
                log=mask.sink(sink),
                work_root=(
                    self.options.remote_work_root
                    if not running.task.host.is_local
                    else self.local_work_root()
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

    def local_work_root(self) -> str:
        if self.options.local_work_root:
            return self.options.local_work_root
        return str((self.store.log_path(self.name, 0).parent.parent / "work").resolve())
