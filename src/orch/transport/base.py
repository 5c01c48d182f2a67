"""The transport contract: run a command, copy files. Small on purpose, tested on a real sshd."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class CommandResult:
    rc: int | None
    """None when the command was killed (timeout or cancel)."""
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    cancelled: bool = False


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
