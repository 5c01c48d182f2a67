"""Executions: each one an ``orch run WORKFLOW -n DEPLOYMENT`` child process, in its own session
(it outlives the server, even a kill -9), with its JSON events in ``events.jsonl`` and its exit
status in ``rc`` when it ends, in the execution's folder. The server only starts, watches and
cancels them: a server started again finds the ones still running by their pid and process
start time, and the ended ones by their ``rc``; nothing is ever started twice."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orch.executors.shared_monitor import MONITOR_DIR_ENV
from orch.serve.store import (
    ACTIVE,
    CANCELLED,
    FAILED,
    SUCCESS,
    Execution,
    Publication,
    ServeStore,
)
from orch.sites.config import ACCOUNTS_ENV, ACCOUNTS_ONLY_ENV

INTERRUPTED = 130
"""orch's exit status for a run that was stopped (Ctrl-C, `orch cancel`)."""
_WRAPPER = (
    'd=$1; shift; "$@" >"$d/events.jsonl" 2>"$d/stderr.log"; echo $? >"$d/rc.tmp"; '
    'mv "$d/rc.tmp" "$d/rc"; rm -f "$d/inputs.json"'
)
"""Runs orch with its output in the execution's folder ($1); its exit status is written when
it ends, whoever watches (the inputs file, which may hold secrets, goes with it)."""
MASK = "<secret: hidden>"
NICENESS = 10
CACHED = 64
DEBUG, INFO, WARN, ERROR = 1, 2, 4, 8
LEVELS = {DEBUG: "DEBUG", INFO: "INFO", WARN: "WARN", ERROR: "ERROR"}


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc); None when it is gone or
    a zombie: with the pid, it names a process whatever pids are reused later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def orch_command() -> list[str]:
    return [sys.executable, "-m", "orch"]


class Executions:
    """Starts, watches and cancels the executions of one server."""

    def __init__(self, store: ServeStore, state_dir: Path):
        self.store = store
        self.state_dir = Path(state_dir).resolve()
        self.root = store.folder / "executions"
        self.root.mkdir(mode=0o700, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._secrets: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._read: OrderedDict[str, tuple[int, list[dict[str, Any]]]] = OrderedDict()
        """Per execution: how far its events file was read, and the events in it."""
        self.cwd = Path.cwd()
        """Where executions run: the server's folder, as `orch run` typed there would (its
        sites.yaml, relative paths)."""

    def folder(self, execution_id: str) -> Path:
        return self.root / execution_id

    # -- starting ----------------------------------------------------------------------------
    def create(self, user: str, publication: Publication) -> str:
        """Record a new execution (RUNNING, no process yet): from now on its deployment is
        busy. Quick, so that callers may hold a lock around it."""
        execution_id = secrets.token_hex(8)
        self.folder(execution_id).mkdir(mode=0o700)
        self.store.add_execution(execution_id, user, publication)
        return execution_id

    def launch(
        self, execution_id: str, user: str, publication: Publication, inputs: dict[str, Any],
        secret_names: set[str],
    ) -> None:  # fmt: skip
        """Start the ``orch run`` of a created execution."""
        folder = self.folder(execution_id)
        fd = os.open(folder / "inputs.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(inputs, out)
        hidden = [str(v) for n, v in inputs.items() if n in secret_names and str(v)]
        self._secrets[execution_id] = hidden
        command = [
            *orch_command(), "run", publication.workflow, "-n", publication.deployment,
            "--format", "json", "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        if inputs:
            command += ["-i", str(folder / "inputs.json")]
        env = dict(os.environ)
        accounts = self.store.accounts(user)
        if accounts:  # the user's own site accounts, not the publisher's
            fd = os.open(folder / "accounts.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(accounts, out)
            env[ACCOUNTS_ENV] = str(folder / "accounts.json")
        else:
            env.pop(ACCOUNTS_ENV, None)
        if publication.own_accounts:  # never with sites.yaml's account (the publisher's)
            env[ACCOUNTS_ONLY_ENV] = "1"
        else:
            env.pop(ACCOUNTS_ONLY_ENV, None)
        # every execution's jobs on a site login are watched by one status command a round
        env[MONITOR_DIR_ENV] = str(self.store.folder / "monitor")
        child = subprocess.Popen(
            # below the server's priority: 50 executions starting at once (each some CPU to
            # start) do not keep the API from answering
            ["nice", "-n", str(NICENESS), "sh", "-c", _WRAPPER, "sh", str(folder), *command],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self._lock:
            self._children[execution_id] = child
        self.store.set_process(execution_id, child.pid, process_start(child.pid) or "")

    # -- watching ----------------------------------------------------------------------------
    def refresh(self, execution: Execution) -> Execution:
        """The execution as it is now: an ended process's outcome recorded."""
        if execution.status not in ACTIVE:
            return execution
        with self._lock:
            child = self._children.get(execution.id)
        if child is not None and child.poll() is not None:
            with self._lock:
                self._children.pop(execution.id, None)
        rc_file = self.folder(execution.id) / "rc"
        if rc_file.exists():
            try:
                rc: int | None = int(rc_file.read_text().strip())
            except ValueError:
                rc = None
        elif self._alive(execution):
            return execution
        else:
            rc = None  # gone without a word (killed): failed, unless a cancel was asked
        if rc == 0:
            status = SUCCESS
        elif execution.cancel_requested or rc == INTERRUPTED:
            status = CANCELLED
        else:
            status = FAILED
        self.store.finish(execution.id, status, self._outputs(execution.id))
        self._secrets.pop(execution.id, None)
        # killed before its wrapper could: the inputs, which may hold secrets, go now
        (self.folder(execution.id) / "inputs.json").unlink(missing_ok=True)
        found = self.store.execution(execution.id)
        assert found is not None
        return found

    def _alive(self, execution: Execution) -> bool:
        if execution.pid is None:
            return time.time() - execution.created < 30  # being started
        start = process_start(execution.pid)
        return start is not None and start == execution.process_start

    def refresh_all(self) -> None:
        for execution in self.store.executions(active=True):
            self.refresh(execution)

    def watch(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Record the outcome of executions as they end, until ``stop``."""
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a busy database: next time
                self.refresh_all()

    def _outputs(self, execution_id: str) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for event in self._events(execution_id):
            if event.get("kind") == "result" and isinstance(event.get("outputs"), dict):
                outputs = event["outputs"]
        return outputs

    # -- cancelling --------------------------------------------------------------------------
    def cancel(self, execution: Execution) -> None:
        """As `orch cancel DEPLOYMENT` does (it asks the orch process running the deployment to
        stop and cancel its jobs, then cancels what is left), again while the execution's
        process still runs (it may not have taken the deployment's lock yet)."""
        self.store.request_cancel(execution.id)
        threading.Thread(target=self._cancel, args=(execution,), daemon=True).start()

    def _cancel(self, execution: Execution) -> None:
        command = [
            *orch_command(), "cancel", execution.deployment, "--state-dir", str(self.state_dir),
            "--format", "json",
        ]  # fmt: skip
        for _ in range(100):
            subprocess.run(
                command, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                start_new_session=True,
            )  # fmt: skip
            time.sleep(0.3)
            if (self.folder(execution.id) / "rc").exists() or not self._alive(execution):
                break

    # -- logs --------------------------------------------------------------------------------
    def _events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's JSON events so far. Read on from where the last call stopped (a
        status request, a long poll and an event stream each ask every few tenths of a
        second): only complete lines, kept for the ``CACHED`` executions asked last."""
        path = self.folder(execution_id) / "events.jsonl"
        with self._lock:
            offset, events = self._read.pop(execution_id, (0, []))
        try:
            with path.open("rb") as stream:
                if stream.seek(0, 2) < offset:  # not the file read before: from the start
                    offset, events = 0, []
                stream.seek(offset)
                chunk = stream.read()
        except OSError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        events = list(events)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        with self._lock:
            self._read[execution_id] = (offset + len(complete), events)
            while len(self._read) > CACHED:
                self._read.popitem(last=False)
        return events

    def logs(self, execution: Execution, levels: int) -> list[dict[str, str]]:
        """The execution's log entries so far, of the levels asked (bit mask; 0: INFO, WARN
        and ERROR), with the secret inputs it was given masked."""
        mask = levels or (INFO | WARN | ERROR)
        entries: list[tuple[int, float, str]] = []
        when = execution.created
        for event in self._events(execution.id):
            when = float(event.get("time") or when)
            entries.extend((level, when, text) for level, text in _entries(event))
        if execution.status not in ACTIVE:
            stderr = self.folder(execution.id) / "stderr.log"
            with contextlib.suppress(OSError):
                ended = stderr.stat().st_mtime
                for line in stderr.read_text("utf-8", errors="replace").splitlines():
                    if line.strip():
                        entries.append((ERROR, ended, line))
        hidden = self._secrets.get(execution.id, [])
        shown = []
        for level, when, text in entries:
            if not level & mask:
                continue
            for secret in hidden:
                text = text.replace(secret, MASK)
            stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
            shown.append({"level": LEVELS[level], "timestamp": stamp.replace("+00:00", "Z"),
                          "content": text})  # fmt: skip
        return shown


def _entries(event: dict[str, Any]) -> list[tuple[int, str]]:
    """One JSON event of orch as log lines (level, text)."""
    kind = event.get("kind")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    message = str(event.get("message") or "")
    if kind == "run-start":
        return [(INFO, f"workflow {str(data.get('action', '')).partition(':')[2]!r} started: "
                       f"{data.get('operations', 0)} operation(s)")]  # fmt: skip
    if kind == "step-start":
        return [(INFO, f"{message} started on {data.get('host', '?')}")]
    if kind == "step-end":
        failed = data.get("status") not in ("ok", "skipped", "done")
        lines = [(ERROR if failed else INFO,
                  f"{message}: {data.get('status')} (rc {data.get('rc')}, {data.get('elapsed')}s)")]
        lines += [(ERROR if failed else INFO, str(t)) for t in data.get("tail") or []]
        return lines  # fmt: skip
    if kind == "run-end":
        return [(INFO if data.get("status") == "ok" else ERROR,
                 f"workflow ended: {data.get('status')}")]  # fmt: skip
    if kind == "result":
        failures = event.get("failures") or []
        return [(ERROR, f"{f.get('title')} failed: {f.get('message')}") for f in failures
                if isinstance(f, dict)]  # fmt: skip
    if message:
        return [(WARN if message.lower().startswith("warning") else INFO, message)]
    return [(DEBUG, json.dumps(event, default=str))]
