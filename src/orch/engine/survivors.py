"""What an orch killed by ``kill -9`` (or a closed laptop) left running, found again.

Every operation's command runs with ``ORCH_OPERATION=<token>`` in its environment, the token
written with the operation's record before the command starts; whatever the command starts
inherits it. After a crash, the operations left interrupted are looked up on their hosts by
that token in ``/proc/*/environ`` (one command per host, the same over SSH as here), then
waited for or stopped, so that an operation never runs twice at the same time.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orch.transport.base import OPERATION_ENV, Transport

ENV = OPERATION_ENV
"""The environment variable that marks an operation's processes."""

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL of a survivor."""

POLICIES = ("wait", "stop")


@dataclass(frozen=True)
class Survivor:
    """A process of an interrupted operation, still running on its host."""

    token: str
    pid: int


class SurvivorError(Exception):
    """The host cannot be asked (unreachable, no /proc)."""


def find_command(tokens: list[str]) -> str:
    """A shell command printing ``<pid> <token>`` per process whose environment holds one of
    ``tokens``: GNU grep over NUL-separated entries, a single process whatever their number."""
    patterns = " ".join(f"-e {shlex.quote(f'{ENV}={token}')}" for token in tokens)
    return (
        f"grep -H -a -z -x -F {patterns} /proc/[0-9]*/environ 2>/dev/null "
        "| tr '\\000' '\\n' | sed -n 's,^/proc/\\([0-9]*\\)/environ:" + ENV + "=,\\1 ,p'; true"
    )


def find(transport: Transport, tokens: list[str]) -> list[Survivor]:
    """The processes on ``transport``'s host that belong to the operations of ``tokens``."""
    if not tokens:
        return []
    result = transport.run(find_command(tokens), timeout=60)
    if result.rc != 0:
        raise SurvivorError(f"{transport.host}: cannot list processes: {result.stderr.strip()}")
    found = []
    wanted = set(tokens)
    for line in result.stdout.splitlines():
        pid, _, token = line.partition(" ")
        if pid.isdigit() and token in wanted:
            found.append(Survivor(token, int(pid)))
    return found


def stop(transport: Transport, tokens: list[str], grace: float = KILL_GRACE) -> list[Survivor]:
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


def _signal(transport: Transport, signal: str, survivors: list[Survivor]) -> None:
    pids = " ".join(str(s.pid) for s in survivors)
    transport.run(f"kill -{signal} {pids} 2>/dev/null; true", timeout=30)


def settle(
    store: Any,
    name: str,
    transport_for: Callable[[str], Transport],
    policy: str,
    note: Callable[[str], None],
    wait: Callable[[float], bool],
) -> bool:
    """Deal with the survivors of deployment ``name``'s interrupted operations: for each host,
    one look; then wait for them (``wait(seconds)`` sleeps, True when the user stops) or stop
    them, as ``policy`` says. Each operation is then marked settled, so that it is looked for
    once. False when the user stopped while waiting."""
    by_instance: dict[str, list[Any]] = {}
    for op in store.unsettled(name):
        by_instance.setdefault(str(op.process.get("host_instance", "")), []).append(op)
    for instance, ops in by_instance.items():
        tokens = [str(op.process["token"]) for op in ops]
        titles = ", ".join(f"{op.instance} {op.interface}.{op.operation}" for op in ops)
        outcome = "gone"
        try:
            transport = transport_for(instance)
            found = find(transport, tokens)
            if found and policy == "stop":
                stop(transport, tokens)
                outcome = "stopped"
                note(f"stopped {len(found)} process(es) of {titles} that the interrupted run "
                     f"left running on {transport.host}")  # fmt: skip
            elif found:
                outcome = "waited"
                note(f"waiting for {titles}, left running on {transport.host} by the "
                     f"interrupted run ({len(found)} process(es)), to end before anything runs "
                     "again; Ctrl-C to leave, or --survivors stop to stop them")  # fmt: skip
                while found:
                    if wait(1.0):
                        return False
                    found = find(transport, tokens)
        except Exception as exc:  # an unreachable host must not hide the warning
            outcome = "unchecked"
            note(f"cannot tell whether {titles} still runs (left by the interrupted run): "
                 f"{exc}; it runs again now")  # fmt: skip
        for op in ops:
            store.set_operation_process(op.id, {**op.process, "settled": outcome})
    return True
