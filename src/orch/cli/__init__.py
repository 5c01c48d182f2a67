"""Command-line interface: click commands only; the work is done by orch.tosca and friends.

Ctrl-C while the command line is still being imported (click, the command's module) would
print a ``KeyboardInterrupt`` traceback: when this package is loaded by the ``orch`` program
itself, SIGINT ends it at once with status 130 and nothing on stderr, until ``main`` hands
Ctrl-C to the command (see ``orch.cli.main.main``). Imported as a library (tests, the API),
nothing changes. ``_signal`` (built in) rather than ``signal``, whose import of ``enum`` would
widen the window this closes.
"""

import _signal
import os
import sys


def quiet_interrupt(_signum: int, _frame: object) -> None:
    """SIGINT before a command handles it: exit 130 (interrupted) quietly."""
    os._exit(130)


def _started_as_orch() -> bool:
    """True in the ``orch`` console script and in ``python -m orch``."""
    first = sys.argv[0] if sys.argv else ""
    return os.path.basename(first) == "orch" or first.endswith(os.path.join("orch", "__main__.py"))


if _started_as_orch() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, quiet_interrupt)
