"""What an orch killed by ``kill -9`` (or a closed laptop) left running, found again.

Every operation's command runs with ``ORCH_OPERATION=<token>`` in its environment, the token
written with the operation's record before the command starts; whatever the command starts
inherits it. After a crash, the operations left interrupted are looked up on their hosts by
that token in ``/proc/*/environ`` (one command per host, the same over SSH as here), then
waited for or stopped, so that an operation never runs twice at the same time. Finding and
stopping them is ``orch.transport.processes``' (executors stop a stopped operation's remote
processes with it too), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orch.transport.base import Transport
from orch.transport.processes import ENV, KILL_GRACE, find, find_command, stop
from orch.transport.processes import ProcessListError as SurvivorError
from orch.transport.processes import TokenProcess as Survivor

POLICIES = ("wait", "stop")

__all__ = [
    "ENV",
    "KILL_GRACE",
    "POLICIES",
    "Survivor",
    "SurvivorError",
    "find",
    "find_command",
    "settle",
    "stop",
]


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
