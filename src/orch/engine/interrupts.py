"""Signals, in one place. `orch cancel NAME` asks the orch process running NAME to stop and
cancel its jobs with a signal. A request that arrives before the engine runs (while the blueprint
is read) is kept here, so that it is neither lost nor fatal (SIGUSR1 would kill the process by
default). While an engine runs, Ctrl-C (SIGINT), SIGTERM and that signal stop it (``handle``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

CANCEL_SIGNAL = signal.SIGUSR1
requested = threading.Event()


def _remember(_signum: int, _frame: Any) -> None:
    requested.set()


def install() -> None:
    """Keep cancel requests until an engine takes them (main thread only, as Python wants)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(CANCEL_SIGNAL, _remember)


def take() -> bool:
    """True once if a cancel request came while no engine was running."""
    if requested.is_set():
        requested.clear()
        return True
    return False


def handle(
    stop: Callable[..., None], stopping: Callable[[], bool], cancel_jobs_on_interrupt: bool
) -> dict[int, Any]:
    """While an engine runs: Ctrl-C stops it (``stop(cancel=..., cancel_jobs=...)``), a second
    one or SIGTERM cancels the running operations, `orch cancel` also cancels the jobs. The
    handlers replaced are returned, for ``restore`` (none outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}

    def interrupt(signum: int, _frame: Any) -> None:
        # a second interrupt, or SIGTERM, cancels the running operations
        stop(cancel=signum == signal.SIGTERM or stopping(), cancel_jobs=cancel_jobs_on_interrupt)

    def cancel_jobs(_signum: int, _frame: Any) -> None:
        # `orch cancel NAME` from another process: stop now, then cancel the jobs
        stop(cancel=True, cancel_jobs=True)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, interrupt)
    previous[CANCEL_SIGNAL] = signal.signal(CANCEL_SIGNAL, cancel_jobs)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers ``handle`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
