"""What ``orch deploy`` shows while the engine runs: a JSON stream, plain lines or a live view.

The engine calls the listener on its scheduling thread, so handling an event must be cheap: the
live view only updates its own tables, and rich's refresh thread draws them (at most 8 times a
second), together with the lines to print above it. ``rich`` is imported only when a live view
starts, so nothing ``orch --help`` loads pays for it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter, deque
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from orch.engine.events import Event

JSON_VERSION = 1
REFRESH_PER_SECOND = 8
FAILED = frozenset({"failed", "timeout", "cancelled"})

_GREEN, _RED, _YELLOW, _CYAN = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[36m"
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_LABEL_COLORS = {
    "ok": _GREEN,
    "failed": _RED,
    "timeout": _RED,
    "cancelled": _YELLOW,
    "skipped": _YELLOW,
    "start": _CYAN,
    "note": _BOLD,
}


class Progress:
    """A listener for engine events; ``close()`` (or leaving a ``with``) ends its display."""

    def __call__(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; called in a ``finally`` so a terminal is never left without a cursor."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_listener(
    fmt: str,
    *,
    stream: IO[str] | None = None,
    out: IO[str] | None = None,
    color: bool,
    verbosity: int,
) -> Progress:
    """The listener for ``--format fmt``: ``json`` (events on ``out``) or ``text`` (on
    ``stream``: a live view on a terminal, plain lines elsewhere or with ``-q``).

    ``stream`` and ``out`` default to the current ``sys.stderr`` and ``sys.stdout``."""
    stream = sys.stderr if stream is None else stream
    out = sys.stdout if out is None else out
    if fmt == "json":
        return JsonProgress(out, verbosity=verbosity)
    if fmt != "text":
        raise ValueError(f"unknown progress format {fmt!r} (text or json)")
    if verbosity >= 0 and _isatty(stream):
        from rich.console import Console

        console = Console(
            file=stream,
            color_system="auto" if color else None,
            highlight=False,
            emoji=False,
        )
        return LiveProgress(console, verbosity=verbosity)
    return PlainProgress(stream, color=color, verbosity=verbosity)


def _terminal_safe(text: Any) -> str:
    """Operations' output as a terminal may show it: its control characters escaped."""
    from orch.cli.views import escape_controls

    return escape_controls(str(text))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


# ---------------------------------------------------------------------------------------- json


class JsonProgress(Progress):
    """One JSON object per line and per event, flushed at once (CI logs stream them)."""

    def __init__(self, out: IO[str], *, verbosity: int = 0):
        self.out = out
        self.verbosity = verbosity
        self._broken = False
        self._ascii = _isatty(out)  # JSON escapes C0 itself; a terminal must not get C1 either

    def __call__(self, event: Event) -> None:
        if self._broken or (event.kind == "output" and self.verbosity <= 0):
            return
        line = json.dumps(
            {"version": JSON_VERSION, **event.to_dict()}, ensure_ascii=self._ascii, default=str
        )
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            self._broken = True  # the reader left (`| head`): the deployment goes on


# ---------------------------------------------------------------------------------------- plain


def _label(status: str) -> str:
    return f"{status:<7}"


def _failure_text(title: str, data: dict[str, Any], message: str) -> str:
    """'db/0 Standard.start on HOST: why' for a step that did not succeed."""
    status = data.get("status", "failed")
    rc = data.get("rc")
    if not message or message == title:
        message = f"exit status {rc}" if rc not in (None, 0) else status
    host = data.get("host")
    where = f" on {host}" if host and host != "-" else ""
    return f"{title}{where}: {message}"


def _title(event: Event) -> str:
    return str(event.data.get("title") or event.message or event.step or "")


class PlainProgress(Progress):
    """Plain lines for logs and pipes: one per finished, failed or skipped step.

    Verbosity 1 adds step starts, the run's start and the operations' output; 2 adds instance
    state changes; -1 (``-q``) keeps only failures."""

    def __init__(self, stream: IO[str], *, color: bool = False, verbosity: int = 0):
        self.stream = stream
        self.color = color
        self.verbosity = verbosity
        self._safe = _terminal_safe if _isatty(stream) else str
        self._zero: float | None = None
        self._action = "run"

    def __call__(self, event: Event) -> None:
        if self._zero is None:
            self._zero = event.time
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)

    # each handler prints at most a few lines
    def _on_run_start(self, event: Event) -> None:
        self._zero = event.time
        self._action = str(event.data.get("action") or "run")
        if self.verbosity > 0:
            data = event.data
            done = data.get("done") or 0
            extra = f", {done} steps already done" if done else ""
            self._write(
                f"{self._action}: {data.get('operations', '?')} operations, "
                f"{data.get('workers', '?')} workers{extra}"
            )

    def _on_step_start(self, event: Event) -> None:
        if self.verbosity <= 0:
            return
        host = event.data.get("host")
        attempt = event.data.get("attempt") or 1
        text = _title(event) + (f" on {host}" if host else "")
        if attempt > 1:
            text += f" (attempt {attempt})"
        self._line(event, "start", text)

    def _on_step_end(self, event: Event) -> None:
        data = event.data
        status = str(data.get("status", "ok"))
        title = _title(event)
        if status == "ok":
            if self.verbosity >= 0:
                self._line(event, "ok", f"{title} ({data.get('host', '?')}, {_secs(data)})")
            return
        self._line(event, status, _failure_text(title, data, event.message))
        for line in data.get("tail") or ():
            self._write(f"    {self._safe(line)}")

    def _on_step_skip(self, event: Event) -> None:
        if self.verbosity >= 0:
            reason = event.data.get("reason") or "skipped"
            self._line(event, "skipped", f"{event.message or event.step}: {reason}")

    def _on_message(self, event: Event) -> None:
        if self.verbosity >= 0:
            self._line(event, "note", event.message)

    def _on_state(self, event: Event) -> None:
        if self.verbosity > 1:
            self._line(event, "state", f"{event.instance} {event.data.get('state', '')}")

    def _on_output(self, event: Event) -> None:
        if self.verbosity > 0:
            self._line(event, "", f"{event.instance} | {event.message}")

    def _on_run_end(self, event: Event) -> None:
        """Nothing: the command prints the run's verdict (and the outputs) itself."""

    def _line(self, event: Event, label: str, text: str) -> None:
        stamp = f"[{event.time - (self._zero or event.time):6.2f}s]"
        word = _label(label)
        text = self._safe(text)
        if self.color:
            stamp = f"{_DIM}{stamp}{_RESET}"
            word = f"{_LABEL_COLORS.get(label, '')}{word}{_RESET}"
        self._write(f"{stamp} {word} {text}")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # stderr gone: never fail the deployment for it
            pass


def _secs(data: dict[str, Any]) -> str:
    return f"{float(data.get('elapsed') or 0):.2f}s"


def _counts(data: dict[str, Any]) -> str:
    text = (
        f"{data.get('succeeded', 0)} succeeded, {data.get('failed', 0)} failed, "
        f"{data.get('skipped', 0)} skipped"
    )
    if data.get("done_before"):
        text += f", {data['done_before']} already done"
    return text


# ---------------------------------------------------------------------------------------- live

_STATE_STYLES = {
    "initial": "dim",
    "started": "green",
    "configured": "green",
    "created": "green",
    "stopped": "blue",
    "deleted": "dim blue",
    "error": "bold red",
}


class _Row:
    """One node instance in the live table."""

    __slots__ = ("elapsed", "instance", "operation", "running", "spinner", "state", "status")

    def __init__(self, instance: str):
        self.instance = instance
        self.state = ""
        self.operation = ""
        self.status = ""
        """'' (not started), running, ok, failed, timeout, cancelled or skipped."""
        self.elapsed: float | None = None
        self.running: dict[str, tuple[str, float]] = {}
        """step id -> (operation, start time) of this instance's running operations."""
        self.spinner: Any = None


class _Board:
    """The live view's model: changed by events, drawn by rich's refresh thread.

    ``lock`` guards everything: events come on the engine's thread, drawing on rich's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, _Row] = {}
        self.steps: dict[str, str] = {}
        """step id -> running, ok, failed... (a retried step counts once)."""
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.done_before = 0
        self.action = "run"
        self.started: float | None = None
        self.ended: dict[str, Any] | None = None
        self.pending: deque[Any] = deque()
        """Renderables to print above the table at the next refresh."""

    def row(self, instance: str) -> _Row:
        row = self.rows.get(instance)
        if row is None:
            row = self.rows[instance] = _Row(instance)
        return row

    def set_step(self, step: str, status: str) -> None:
        old = self.steps.get(step)
        if old is not None:
            self.counts[old] -= 1
        self.steps[step] = status
        self.counts[status] += 1

    def take_pending(self) -> list[Any]:
        with self.lock:
            items = list(self.pending)
            self.pending.clear()
        return items


class LiveProgress(Progress):
    """A table of node instances that rich redraws in place; failures and notes scroll above."""

    def __init__(self, console: Console, *, verbosity: int = 0):
        self.console = console
        self.verbosity = verbosity
        self.board = _Board()
        self._live: Any = _make_live(self.board, console)
        self._live.start(refresh=False)
        self._closed = False

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            with self.board.lock:
                handler(event)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._live.stop()  # flushes what is pending, draws the table a last time

    # handlers run with the board locked, and only touch the board
    def _on_run_start(self, event: Event) -> None:
        board = self.board
        board.started = event.time
        board.action = str(event.data.get("action") or "run")
        board.total = int(event.data.get("operations") or 0)
        board.done_before = int(event.data.get("done") or 0)

    def _on_step_start(self, event: Event) -> None:
        if self.board.started is None:
            self.board.started = event.time
        row = self.board.row(event.instance or "?")
        operation = _operation(event)
        row.running[event.step or operation] = (operation, event.time)
        row.operation = operation
        row.status = "running"
        self.board.set_step(event.step or operation, "running")

    def _on_step_end(self, event: Event) -> None:
        board = self.board
        data = event.data
        status = str(data.get("status", "ok"))
        row = board.row(event.instance or "?")
        operation, _started = row.running.pop(event.step or "", (_operation(event), event.time))
        if not row.running:
            row.operation = operation
            row.elapsed = float(data.get("elapsed") or 0)
            row.status = status
        elif status in FAILED:
            row.status = status
        board.set_step(event.step or _title(event), status)
        if status in FAILED:
            board.pending.append(_failure_renderable(event))

    def _on_step_skip(self, event: Event) -> None:
        row = self.board.row(event.instance or "?")
        if not row.running and row.status not in FAILED:
            row.status = "skipped"
        self.board.set_step(event.step or event.message, "skipped")

    def _on_state(self, event: Event) -> None:
        self.board.row(event.instance or "?").state = str(event.data.get("state") or "")

    def _on_message(self, event: Event) -> None:
        from rich.text import Text

        self.board.pending.append(Text("note: " + _terminal_safe(event.message), style="bold"))

    def _on_output(self, event: Event) -> None:
        if self.verbosity > 0:
            from rich.text import Text

            text = Text(f"{event.instance} | ", style="dim")
            text.append(_terminal_safe(event.message))
            self.board.pending.append(text)

    def _on_run_end(self, event: Event) -> None:
        self.board.ended = dict(event.data)


def _operation(event: Event) -> str:
    """The step's title without its instance: 'Standard.create', '-> db/0 Configure.add_target'."""
    title = _title(event)
    prefix = f"{event.instance} "
    return title[len(prefix) :] if event.instance and title.startswith(prefix) else title


def _failure_renderable(event: Event) -> Any:
    from rich.text import Text

    data = event.data
    status = str(data.get("status", "failed"))
    text = Text(f"✗ {status}: ", style="bold red")
    text.append(_terminal_safe(_failure_text(_title(event), data, event.message)))
    details = [f"rc {data['rc']}"] if data.get("rc") is not None else []
    details.append(_secs(data))
    text.append(f" ({', '.join(details)})", style="dim")
    for line in data.get("tail") or ():
        text.append("\n    " + _terminal_safe(str(line)), style="dim")
    return text


def _make_live(board: _Board, console: Console) -> Any:
    """A rich ``Live`` whose refreshes first print what the board has pending above it."""
    from rich.console import Group
    from rich.live import Live

    class _BoardLive(Live):
        def refresh(self) -> None:
            with self._lock:
                pending = board.take_pending()
                if pending:
                    # on a terminal, printing above the table redraws it as well
                    self.console.print(Group(*pending))
                    if self.console.is_interactive:
                        return
                super().refresh()

    return _BoardLive(
        _BoardView(board),
        console=console,
        refresh_per_second=REFRESH_PER_SECOND,
        transient=False,
        redirect_stdout=False,  # stdout may be a pipe a script reads: never draw into it
        redirect_stderr=console.file is sys.stderr,
    )


class _BoardView:
    """The table as rich draws it, from a snapshot of the board taken under its lock."""

    def __init__(self, board: _Board):
        from rich.text import Text

        self.board = board
        self.icons = {
            "ok": Text("✓", style="green"),
            "failed": Text("✗", style="bold red"),
            "timeout": Text("✗", style="bold red"),
            "cancelled": Text("✗", style="yellow"),
            "skipped": Text("-", style="dim"),
        }

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        board = self.board
        now = time.time()
        height = (options.height or console.size.height) - 3  # the counts, a margin
        with board.lock:
            rows = _visible(list(board.rows.values()), max(height, 3))
            table = Table.grid(padding=(0, 2))
            for _ in range(5):
                table.add_column(no_wrap=True)
            for row in rows:
                if row.status == "running":
                    if row.spinner is None:
                        row.spinner = Spinner("dots", style="cyan")
                    icon: Any = row.spinner
                    started = min(start for _, start in row.running.values())
                    elapsed = now - started
                else:
                    row.spinner = None
                    icon = self.icons.get(row.status, " ")
                    elapsed = row.elapsed
                table.add_row(
                    icon,
                    Text(row.instance, style="bold" if row.status == "running" else ""),
                    Text(row.state or "-", style=_state_style(row.state)),
                    Text(row.operation, style="red" if row.status in FAILED else ""),
                    Text("" if elapsed is None else f"{elapsed:.1f}s", style="dim"),
                )
            hidden = len(board.rows) - len(rows)
            footer = _footer(board, now, hidden)
        yield table
        yield footer


def _state_style(state: str) -> str:
    if state in _STATE_STYLES:
        return _STATE_STYLES[state]
    return "yellow" if state.endswith("ing") else ""


def _visible(rows: list[_Row], limit: int) -> list[_Row]:
    """All rows if they fit; else running and failed ones first, in their original order."""
    if len(rows) <= limit:
        return rows

    def rank(row: _Row) -> int:
        return 0 if row.status == "running" else 1 if row.status in FAILED else 2

    keep = {id(r) for r in sorted(rows, key=rank)[:limit]}
    return [r for r in rows if id(r) in keep]


def _footer(board: _Board, now: float, hidden: int) -> Any:
    from rich.text import Text

    counts = board.counts
    failed = sum(counts[s] for s in FAILED)
    text = Text()
    if hidden:
        text.append(f"… {hidden} more instances\n", style="dim")
    if board.ended is not None:
        status = str(board.ended.get("status", "ok"))
        style = "bold green" if status == "ok" else "bold red"
        elapsed = float(board.ended.get("elapsed") or 0)
        text.append(f"{board.action} {status} in {elapsed:.1f}s: ", style=style)
        text.append(_counts(board.ended))
        return text
    text.append(f"{counts['ok']}/{board.total} operations done", style="bold")
    text.append(f" · {counts['running']} running")
    text.append(f" · {failed} failed", style="red" if failed else "")
    text.append(f" · {counts['skipped']} skipped")
    if board.done_before:
        text.append(f" · {board.done_before} steps done before", style="dim")
    if board.started is not None:
        text.append(f" · {now - board.started:.0f}s", style="dim")
    return text
