"""The transport contract: run a command, copy files. Small on purpose, tested on a real sshd."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

OPERATION_ENV = "ORCH_OPERATION"
"""Set, in the environment of every command an operation starts, to the operation's token:
processes a killed orch left behind are found by it (``/proc/*/environ``), whoever started
them (the engine, a build, a transfer)."""


@dataclass
class CommandResult:
    rc: int | None
    """None when the command was killed (timeout or cancel)."""
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    cancelled: bool = False


@dataclass(frozen=True)
class Host:
    """Where an operation runs: the orchestrator's own machine, or a host reached over SSH.

    Secrets (``password``, ``private_key``) are excluded from ``repr`` so that they cannot reach
    a log line by accident.
    """

    name: str
    """The Compute node instance that hosts the operation ('localhost' when local)."""
    address: str | None = None
    """None: run on the orchestrator's machine."""
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    private_key: str | None = field(default=None, repr=False)
    """PEM text of a private key (from a Credential token)."""
    password: str | None = field(default=None, repr=False)
    known_hosts: str | None = None
    """A known_hosts file of this host's own (a site's in sites.yaml), checked first."""

    @property
    def is_local(self) -> bool:
        return self.address is None

    @property
    def key(self) -> tuple[str, int, str]:
        """One connection per (address, port, user)."""
        return (self.address or "localhost", self.port, self.user or "")

    def describe(self) -> str:
        if self.address is None:
            return "localhost"
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}"



class TransportError(Exception):
    """A host cannot be reached or a file cannot be copied; ``started`` says whether the command
    had begun on the host before the failure (only a command that had not started is retried)."""

    def __init__(self, message: str, *, host: str, started: bool = False):
        super().__init__(message)
        self.host = host
        self.started = started


class HostKeyError(TransportError):
    """The host's key is unknown or does not match known_hosts."""


LineSink = Callable[[str, str], None]


@dataclass
class HostKeyPolicy:
    """How SSH host keys are checked: against known_hosts files; unknown keys are refused unless
    ``accept_new`` (then they are added to ``known_hosts_file``)."""

    known_hosts_files: list[str] = field(default_factory=list)
    accept_new: bool = False
    known_hosts_file: str | None = None
    """Where newly accepted keys are written (default ~/.ssh/known_hosts)."""

    @classmethod
    def of(cls, known_hosts: Sequence[Any], accept_new: bool) -> HostKeyPolicy:
        """As the CLI's ``--known-hosts`` (repeatable) and ``--accept-new-host-keys`` say:
        new keys go to the first file named."""
        files = [str(p) for p in known_hosts]
        return cls(files, accept_new, files[0] if files else None)


class Transport(Protocol):
    host: str

    def run(
        self,
        command: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        on_line: LineSink | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run a shell command line; stream lines to ``on_line`` as they come."""
        ...

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None: ...

    def put_bytes(self, data: bytes, remote_path: str, mode: int | None = None) -> None: ...

    def get_bytes(self, remote_path: str) -> bytes: ...

    def makedirs(self, remote_path: str) -> None: ...

    def remove_tree(self, remote_path: str) -> None: ...

    def home(self) -> str:
        """The absolute path of the user's home (where relative work dirs live)."""
        ...

    def close(self) -> None: ...


class FileTransferError(TransportError):
    """A file of a streamed transfer cannot be opened, read, written, renamed or removed:
    ``path`` and ``cause`` let the caller say which file and why in its own words."""

    def __init__(self, message: str, *, host: str, path: str, cause: str, started: bool = True):
        super().__init__(message, host=host, started=started)
        self.path = path
        self.cause = cause


def failure_cause(exc: BaseException) -> str:
    """The reason of a file error as a person reads it (``Permission denied``), not a repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileStream:
    """A file opened on a host for a streamed transfer: a read, write or close that fails
    raises FileTransferError naming the file, whatever the medium (SFTP or a local file)."""

    def __init__(self, handle: Any, path: str, host: str,
                 errors: tuple[type[BaseException], ...], size: int = 0, mode: int = 0o644):
        self.handle = handle
        self.path = path
        self.host = host
        self.errors = errors
        self.size = size
        self.mode = mode

    def _fail(self, what: str, exc: BaseException) -> FileTransferError:
        cause = failure_cause(exc)
        return FileTransferError(f"{self.host}: cannot {what} {self.path}: {cause}",
                                 host=self.host, path=self.path, cause=cause)

    def read(self, size: int) -> bytes:
        try:
            return self.handle.read(size)
        except self.errors as exc:
            raise self._fail("read", exc) from exc

    def write(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except self.errors as exc:
            raise self._fail("write", exc) from exc

    def close(self) -> None:
        """Closing a written file flushes it: errors of pipelined writes come out here."""
        try:
            self.handle.close()
        except self.errors as exc:
            raise self._fail("write", exc) from exc

    def discard(self) -> None:
        """Close after a failure: a second error says nothing new."""
        with contextlib.suppress(Exception):
            self.handle.close()


class FileSession(Protocol):
    """Streaming access to a host's files for one transfer (SFTP, or plain files locally)."""

    def open_read(self, path: str) -> FileStream: ...

    def open_write(self, path: str, mode: int) -> FileStream:
        """Create or truncate ``path`` with permission bits ``mode``."""
        ...

    def rename(self, source: str, target: str) -> None:
        """Atomically replace ``target`` by ``source`` (a half transfer never looks whole)."""
        ...

    def remove(self, path: str) -> None:
        """Remove a file; a missing one is fine."""
        ...
