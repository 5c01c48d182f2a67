"""Each operation's folder of records, as ansible-runner keeps its artifacts: the engine (not the
executors) writes them for every operation, in ``<state>/deployments/<name>/runs/<op id>/``:

- ``stdout``, ``stderr``: the operation's lines as they stream (secrets already masked);
- ``rc``: the exit code, or empty (no newline, as ansible-runner writes it);
- ``status``: ok, failed, timeout, cancelled or interrupted (no newline);
- ``task.json``: what ran where (node, instance, interface, operation, host, implementation,
  executor, attempt, start and end times, the message, the inputs with secrets masked; never
  the secret values themselves).

``rc``, ``status`` and ``task.json`` are written to a temporary name in the folder then renamed
over the old one, so that a reader (or a ``kill -9``) never sees half a file. The folder is
0700 and its files 0600: an executor's output may hold what masking could not catch.

The same folder is the executor's ``RunContext.artifacts_dir`` (ansible's private data dir);
its names do not clash with ansible-runner's (``artifacts/``, ``project/``, ``env/``...).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orch.engine.runs import Running
from orch.executors.base import as_text
from orch.executors.masking import MASK, Masker
from orch.plan.steps import Step
from orch.state.rows import OperationRow
from orch.tosca.model import Operation

FOLDER_MODE = 0o700
FILE_MODE = 0o600
STREAMS = ("stdout", "stderr")


def make_folder(path: Path) -> Path:
    """The operation's folder (and ``runs/`` above it), 0700 whatever the umask."""
    os.makedirs(path.parent, mode=FOLDER_MODE, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, FOLDER_MODE)
    os.chmod(path, FOLDER_MODE)
    return path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (0600) all at once: to a temporary file of the same folder,
    synced, then renamed over ``path``. If anything fails, ``path`` keeps its old content (or
    stays absent) and no temporary file is left behind."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            fd = -1  # the file object owns it now
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Streams:
    """``stdout`` and ``stderr`` of one operation, appended to as lines come (a job's run
    operation is called again at each poll: its lines follow the earlier ones)."""

    def __init__(self, folder: Path):
        self._lock = threading.Lock()
        self._files: dict[str, Any] = {}
        try:
            for stream in STREAMS:
                fd = os.open(
                    folder / stream, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                    FILE_MODE,
                )  # fmt: skip
                os.fchmod(fd, FILE_MODE)
                self._files[stream] = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
        except BaseException:
            self.close()
            raise

    def write(self, stream: str, line: str) -> None:
        handle = self._files["stderr" if stream == "stderr" else "stdout"]
        with self._lock:
            handle.write(f"{line}\n")
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._files = {}

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()


def finish(folder: Path, *, rc: int | None, status: str, record: dict[str, Any]) -> None:
    """The end of an operation: ``rc``, ``status`` then ``task.json``, each atomically."""
    make_folder(folder)
    atomic_write(folder / "rc", "" if rc is None else str(int(rc)))
    atomic_write(folder / "status", status)
    write_task(folder, record)


def task_record(
    deployment: str, run_id: int | None, step: Step, op_id: int, attempt: int, host: str,
    operation: Operation | None, running: Running | None, secrets: Iterable[Any],
    started: float | None = None, end: tuple[str, int | None, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What ``task.json`` holds, secrets masked: ``end`` is (status, rc, message) once the
    operation ended; ``started`` is for an operation that never ran (no ``running``)."""
    task = running.task if running is not None else None
    secrets = tuple(task.secret_values if task is not None else secrets)
    implementation = operation.implementation if operation is not None else None
    status, rc, message = end if end is not None else ("running", None, "")
    record = {
        "deployment": deployment,
        "run_id": run_id,
        "operation_id": op_id,
        "step": step.id,
        "node": step.node,
        "instance": step.instance,
        "interface": step.interface or "",
        "operation": step.operation or "",
        "host": scrubbed(host, secrets),
        "implementation": implementation.name if implementation is not None else None,
        "executor": running.executor.name if running is not None else None,
        "attempt": attempt,
        "started": when(running.started_at if running is not None else started),
        "ended": when(time.time()) if end is not None else None,
        "status": status,
        "rc": rc,
        "message": scrubbed(message, secrets),
        "inputs": scrubbed(task.inputs, secrets) if task is not None else {},
    }
    if running is not None and running.job is not None:
        record["job_id"] = running.job.job_id
    return record


def interrupted(folder: Path, deployment: str, op: OperationRow) -> None:
    """The records of an operation a killed run left running: its status is interrupted."""
    record = read_task(folder) or {
        "deployment": deployment, "run_id": op.run_id, "operation_id": op.id,
        "step": op.step, "node": op.node, "instance": op.instance,
        "interface": op.interface, "operation": op.operation, "host": op.host,
        "attempt": op.attempt, "started": when(op.started),
    }  # fmt: skip
    message = "interrupted: the orch process stopped during the operation"
    record.update(status="interrupted", rc=None, message=message,
                  ended=when(op.ended or time.time()))  # fmt: skip
    finish(folder, rc=None, status="interrupted", record=record)


def write_task(folder: Path, record: dict[str, Any]) -> None:
    atomic_write(folder / "task.json", json.dumps(record, indent=2, default=str) + "\n")


def read_task(folder: Path) -> dict[str, Any]:
    """The ``task.json`` written so far, {} when there is none (or it cannot be read)."""
    try:
        data = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def when(timestamp: float | None) -> str | None:
    """A ``time.time()`` as ISO 8601 in UTC."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def scrubbed(value: Any, secrets: Iterable[Any]) -> Any:
    """``value`` (inputs, a message...) with every secret masked, for ``task.json``. Stricter
    than log masking: a text that still holds a secret too short to mask in place (see
    ``MIN_SECRET_LENGTH``), or a number or flag that is one, is replaced by the mask whole."""
    values = [s for s in secrets if s is not None]
    mask = Masker(values)
    texts = {t for s in values for t in (s if isinstance(s, str) else as_text(s), str(s)) if t}

    def scrub(item: Any) -> Any:
        if isinstance(item, dict):
            return {scrub(str(k)): scrub(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [scrub(v) for v in item]
        if item is None:
            return None
        text = item if isinstance(item, str) else as_text(item)
        masked = mask(text)
        if any(secret in masked for secret in texts):
            return MASK
        if not isinstance(item, str):
            return item if masked == text else MASK
        return masked

    return scrub(value)
