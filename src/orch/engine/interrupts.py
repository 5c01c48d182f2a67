"""`orch cancel NAME` asks the orch process running NAME to stop and cancel its jobs with a
signal. A request that arrives before the engine runs (while the blueprint is read) is kept
here, so that it is neither lost nor fatal (SIGUSR1 would kill the process by default)."""

from __future__ import annotations

import signal
import threading
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
