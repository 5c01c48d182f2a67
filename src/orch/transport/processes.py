"""An operation's processes on a host, found and stopped by the token in their environment.

Every command an operation starts carries ``ORCH_OPERATION=<token>`` (``OPERATION_ENV``), and
whatever it starts inherits it: the processes are listed by that token in ``/proc/*/environ``
with one command per host, the same over SSH as here. The engine looks for what a killed orch
left running (``orch.engine.survivors``); an executor ends what a stopped operation left on its
host (an Ansible task's shell goes on after the local ansible-playbook is killed).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from orch.transport.base import OPERATION_ENV, Transport

ENV = OPERATION_ENV
"""The environment variable that marks an operation's processes."""

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL."""


@dataclass(frozen=True)
class TokenProcess:
    """A process of an operation, running on its host."""

    token: str
    pid: int


class ProcessListError(Exception):
    """The host cannot be asked (unreachable, no /proc)."""


def find_command(tokens: list[str]) -> str:
    """A shell command printing ``<pid> <token>`` per process whose environment holds one of
    ``tokens``: GNU grep over NUL-separated entries, a single process whatever their number."""
    patterns = " ".join(f"-e {shlex.quote(f'{ENV}={token}')}" for token in tokens)
    return (
        f"grep -H -a -z -x -F {patterns} /proc/[0-9]*/environ 2>/dev/null "
        "| tr '\\000' '\\n' | sed -n 's,^/proc/\\([0-9]*\\)/environ:" + ENV + "=,\\1 ,p'; true"
    )


def find(transport: Transport, tokens: list[str]) -> list[TokenProcess]:
    """The processes on ``transport``'s host that belong to the operations of ``tokens``."""
    if not tokens:
        return []
    result = transport.run(find_command(tokens), timeout=60)
    if result.rc != 0:
        raise ProcessListError(f"{transport.host}: cannot list processes: {result.stderr.strip()}")
    found = []
    wanted = set(tokens)
    for line in result.stdout.splitlines():
        pid, _, token = line.partition(" ")
        if pid.isdigit() and token in wanted:
            found.append(TokenProcess(token, int(pid)))
    return found


def stop(transport: Transport, tokens: list[str], grace: float = KILL_GRACE) -> list[TokenProcess]:
    """SIGTERM the operations' processes, SIGKILL what is left after ``grace``; returns what
    was found at first."""
    found = find(transport, tokens)
    if not found:
        return found
    _signal(transport, "TERM", found)
    deadline = time.monotonic() + grace
    left = found
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = find(transport, tokens)
    if left:
        _signal(transport, "KILL", left)
    return found


def _signal(transport: Transport, signal: str, processes: list[TokenProcess]) -> None:
    pids = " ".join(str(p.pid) for p in processes)
    transport.run(f"kill -{signal} {pids} 2>/dev/null; true", timeout=30)
