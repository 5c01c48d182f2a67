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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orch.executors.base import as_text
from orch.executors.masking import MASK, Masker

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
