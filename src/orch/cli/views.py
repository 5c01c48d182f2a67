"""What ``orch list``, ``status``, ``outputs``, ``plan``, ``graph`` and ``logs`` print.

Pure functions from store rows or plans to strings (``log_lines`` yields lines), so the commands
only choose streams and formats, and tests need no terminal. Nothing here prints inputs or
attributes: they may hold secrets.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.plan.steps import Plan, Step
    from orch.state import Deployment, InstanceRow, JobRow, OperationRow, RunRow, Store

NOT_OK = frozenset({"failed", "timeout", "cancelled", "interrupted"})
POLL_INTERVAL = 0.2


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"


def _local(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import datetime

    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, without trailing blanks."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines) + "\n"


def _check(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(allowed)})")


# ------------------------------------------------------------------------------ orch list


def deployments_table(
    rows: Sequence[Deployment],
    fmt: str = "text",
    instances: Mapping[str, Sequence[InstanceRow]] | None = None,
) -> str:
    """``orch list``. ``instances`` (deployment name -> its instances), when given, adds how
    many instances each has and how many of them are started. Text is "" without rows, so the
    command can say so on stderr."""
    _check(fmt, ("text", "json"))
    if fmt == "json":
        result = []
        for d in rows:
            item: dict[str, Any] = {
                "name": d.name,
                "status": d.status,
                "blueprint": d.blueprint,
                "created": _iso(d.created),
                "updated": _iso(d.updated),
            }
            if instances is not None:
                item["instances"] = _state_counts(instances.get(d.name, ()))
            result.append(item)
        return _json(result)
    if not rows:
        return ""
    header = ["NAME", "STATUS", "BLUEPRINT", "UPDATED"]
    if instances is not None:
        header.append("INSTANCES")
    table = []
    for d in rows:
        line = [d.name, d.status, d.blueprint, _local(d.updated)]
        if instances is not None:
            own = instances.get(d.name, ())
            started = sum(1 for i in own if i.state == "started")
            line.append(f"{started}/{len(own)} started" if own else "0")
        table.append(line)
    return _columns(header, table)


def _state_counts(rows: Sequence[InstanceRow]) -> dict[str, Any]:
    states: dict[str, int] = {}
    for row in rows:
        states[row.state or "initial"] = states.get(row.state or "initial", 0) + 1
    return {"total": len(rows), "states": states}


# ------------------------------------------------------------------------------ orch status


def _elapsed(op: OperationRow, now: float | None = None) -> float:
    end = op.ended if op.ended is not None else (now if now is not None else time.time())
    return max(0.0, end - op.started)


def _op_title(op: OperationRow) -> str:
    """As the step's title: 'web/0 Standard.create', 'web/0 -> db/0 Configure.add_target'."""
    where = op.instance
    if ">" in where:  # a relationship's operation: 'source>target#requirement'
        source, _, rest = where.partition(">")
        where = f"{source} -> {rest.partition('#')[0]}"
    return f"{where} {op.interface}.{op.operation}"


def _op_result(op: OperationRow) -> str:
    """'ok (rc 0, 0.02s)', 'running (3.1s)'."""
    details = [] if op.rc is None else [f"rc {op.rc}"]
    details.append(f"{_elapsed(op):.2f}s")
    return f"{op.status} ({', '.join(details)})"


def _tail(op: OperationRow) -> list[str]:
    return (list(op.stdout_tail) + list(op.stderr_tail))[-10:]


def _op_dict(op: OperationRow) -> dict[str, Any]:
    return {
        "id": op.id,
        "run_id": op.run_id,
        "step": op.step,
        "instance": op.instance,
        "node": op.node,
        "operation": f"{op.interface}.{op.operation}",
        "host": op.host,
        "status": op.status,
        "rc": op.rc,
        "started": _iso(op.started),
        "ended": _iso(op.ended),
        "elapsed": round(_elapsed(op), 3),
        "attempt": op.attempt,
        "message": op.message,
    }


def unresolved_failures(operations: Sequence[OperationRow]) -> list[OperationRow]:
    """Operations that did not succeed and were not run again since: the latest attempt of
    each step, when it is not ok (a step fixed by a later run is not a failure any more)."""
    latest: dict[str, OperationRow] = {}
    for op in operations:
        if op.step not in latest or op.id > latest[op.step].id:
            latest[op.step] = op
    return sorted((op for op in latest.values() if op.status in NOT_OK), key=lambda o: o.id)


def status_view(
    deployment: Deployment,
    instances: Sequence[InstanceRow],
    operations: Sequence[OperationRow],
    fmt: str = "text",
    jobs: Sequence[JobRow] = (),
    ports: dict[str, int] | None = None,
) -> str:
    """``orch status NAME``: the deployment, each instance's state and last operation, the jobs
    it ran (one row per execution), the ports its applications listen on (``orch connect``),
    and the operations that failed and were not run again since."""
    ports = ports or {}
    _check(fmt, ("text", "json"))
    last: dict[str, OperationRow] = {}
    for op in operations:
        if op.instance not in last or op.id > last[op.instance].id:
            last[op.instance] = op
    failures = unresolved_failures(operations)
    if fmt == "json":
        return _json(
            {
                "name": deployment.name,
                "status": deployment.status,
                "blueprint": deployment.blueprint,
                "created": _iso(deployment.created),
                "updated": _iso(deployment.updated),
                "instances": [
                    {
                        "id": i.id,
                        "node": i.node,
                        "state": i.state,
                        "attributes": dict(i.attributes),
                        "last_operation": _op_dict(last[i.id]) if i.id in last else None,
                    }
                    for i in instances
                ],
                "jobs": [_job_dict(job) for job in jobs],
                "ports": ports,
                "allocations": held_allocations(instances),
                "failures": [{**_op_dict(op), "tail": _tail(op)} for op in failures],
            }
        )
    lines = [
        f"deployment {deployment.name}: {deployment.status}",
        f"  blueprint: {deployment.blueprint}",
        f"  updated:   {_local(deployment.updated)}",
        "",
    ]
    text = "\n".join(lines) + "\n"
    if instances:
        rows = []
        for i in instances:
            op = last.get(i.id)
            rows.append(
                [
                    i.id,
                    i.state or "initial",
                    f"{op.interface}.{op.operation}" if op else "-",
                    op.status if op else "",
                    "" if op is None or op.rc is None else str(op.rc),
                    f"{_elapsed(op):.2f}s" if op else "",
                ]
            )
        text += _columns(["INSTANCE", "STATE", "LAST OPERATION", "STATUS", "RC", "ELAPSED"], rows)
    else:
        text += "no instances yet\n"
    if jobs:
        text += "\n" + _columns(
            ["JOB", "INSTANCE", "HOST", "STATUS", "REPORTED", "SUBMITTED", "ELAPSED"],
            [
                [
                    job.job_id,
                    job.instance,
                    job.host,
                    job.status,
                    job.detail,
                    _local(job.submitted),
                    f"{(job.ended or time.time()) - job.submitted:.1f}s",
                ]
                for job in jobs
            ],
        )
    allocations = held_allocations(instances)
    if allocations:
        text += "\nallocations (held until orch undeploy):\n"
        for held in allocations:
            left = held["left_seconds"]
            remaining = (" (time limit reached)" if left == 0 else
                         f", {_duration(left)} left of {held['time_limit']}" if left is not None
                         else ", no time limit")  # fmt: skip
            text += (f"  {held['instance']}: allocation {held['id']} on "
                     f"{held['nodes'] or '?'}{remaining}\n")
    if ports:
        text += "\nports (orch connect " + deployment.name + " NODE):\n"
        text += "".join(f"  {node}: {port}\n" for node, port in sorted(ports.items()))
    if failures:
        text += f"\n{len(failures)} failed operation{'s' if len(failures) != 1 else ''}:\n"
        for op in failures:
            where = f" on {op.host}" if op.host and op.host != "-" else ""
            text += f"  {_op_title(op)}{where}: {_op_result(op)}"
            text += f": {op.message}\n" if op.message else "\n"
            text += "".join(f"      {line}\n" for line in _tail(op))
    return text


def held_allocations(instances: Sequence[InstanceRow],
                     now: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The Slurm allocations the deployment holds (instances with an ``allocation_id``) and
    the seconds each has left, from the end Slurm told when it granted it (no site asked)."""
    import datetime

    now = time.time() if now is None else now
    held = []
    for instance in instances:
        attributes = instance.attributes or {}
        allocation = str(attributes.get("allocation_id") or "")
        if not allocation:
            continue
        left = None
        try:
            end = datetime.datetime.strptime(str(attributes.get("ends_at")), "%Y-%m-%dT%H:%M:%SZ")
            left = max(0, round(end.replace(tzinfo=datetime.timezone.utc).timestamp() - now))
        except ValueError:
            pass
        held.append({"instance": instance.id, "id": allocation,
                     "nodes": str(attributes.get("node_list") or ""),
                     "time_limit": str(attributes.get("time_limit") or ""),
                     "ends_at": str(attributes.get("ends_at") or ""), "left_seconds": left})
    return held


def _duration(seconds: int) -> str:
    """``1 h 05 min``, ``9 min 58 s``, ``40 s``: a time left, for people."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _job_dict(job: JobRow) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "instance": job.instance,
        "node": job.node,
        "host": job.host,
        "status": job.status,
        "reported": job.detail,
        "run_id": job.run_id,
        "submitted": _iso(job.submitted),
        "ended": _iso(job.ended) if job.ended is not None else None,
    }


# ------------------------------------------------------------------------------ orch outputs


def outputs_view(outputs: Mapping[str, Any], fmt: str = "json") -> str:
    """``orch outputs``: json, yaml (in the blueprint's order) or text (``name: value``)."""
    _check(fmt, ("json", "yaml", "text"))
    if fmt == "json":
        return _json(dict(outputs))
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(
            dict(outputs), sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    lines = []
    for name, value in outputs.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{name}: {shown}")
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------------------ orch plan / graph


def plan_view(plan: Plan, fmt: str = "text", model: Any = None) -> str:
    """``orch plan``: the steps wave by wave (json: ``plan.to_dict()``), then which operations
    run orch's built-in executors in the place of what their type wrote.

    A step's dependencies are listed unless they are obvious: the whole previous wave, or the
    previous step of the same instance."""
    _check(fmt, ("text", "json"))
    if fmt == "json":
        return _json(plan.to_dict())
    waves = plan.waves()
    operations = len(plan.operations())
    lines = [
        f"{plan.kind} plan: {len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''} "
        f"({operations} operation{'s' if operations != 1 else ''}) in {len(waves)} "
        f"wave{'s' if len(waves) != 1 else ''}"
    ]
    previous: set[str] = set()
    for number, wave in enumerate(waves, 1):
        parallel = f" ({len(wave)} in parallel)" if len(wave) > 1 else ""
        lines.append(f"wave {number}{parallel}:")
        for step in wave:
            lines.append("  " + _step_line(plan, step, previous))
        previous = {s.id for s in wave}
    if model is not None:
        lines.extend(_builtin_lines(plan, model))
    return "\n".join(lines) + "\n"


def _builtin_lines(plan: Plan, model: Any) -> list[str]:
    """One line per operation of the plan that a type binding gave to an orch executor."""
    lines: list[str] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for step in plan.steps.values():
        key = (step.node, step.interface, step.operation)
        if step.kind != "operation" or key in seen:
            continue
        seen.add(key)
        operation = model.nodes[step.node].operation(step.interface or "", step.operation or "")
        if operation is None or not operation.replaces or operation.implementation is None:
            continue
        line = (
            f"  {step.node} {step.interface.rsplit('.', 1)[-1]}.{step.operation}: orch's "
            f"'{operation.implementation.name}' in place of {operation.replaces}"
        )
        refusal = _refusal(model.nodes[step.node], operation.implementation.name)
        lines.append(line + (f"  REFUSED: {refusal}" if refusal else ""))
    return ["built in (chosen by type):", *lines] if lines else []


def _refusal(node: Any, executor: str) -> str | None:
    """Why a DLS node will be refused when it runs, when its DAG is written in the blueprint
    (deploy and run refuse it before anything runs, whatever it is)."""
    if executor != "dls":
        return None
    from orch.executors.dls import unsupported_reason

    dag_id = node.properties.get("dag_id")
    return unsupported_reason(node.types, dag_id if isinstance(dag_id, str) else None)


def _step_line(plan: Plan, step: Step, previous: set[str]) -> str:
    text = f"{step.label}: {step.title}" if step.label else step.title
    deps = step.deps
    obvious = set(deps) == previous or (
        len(deps) == 1 and deps[0] in previous and plan.steps[deps[0]].instance == step.instance
    )
    if deps and not obvious:
        text += f"  (after {', '.join(plan.steps[d].title for d in deps)})"
    if step.on_failure_of:
        text += f"  (on failure of {', '.join(plan.steps[d].title for d in step.on_failure_of)})"
    return text


def _node_ids(plan: Plan) -> dict[str, str]:
    """Step id -> an identifier both DOT and Mermaid accept, readable and unique."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for sid in plan.steps:
        base = "s_" + re.sub(r"[^A-Za-z0-9_]", "_", sid)
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        ids[sid] = name
    return ids


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(plan: Plan) -> str:
    """The step graph in Graphviz DOT; failure handlers' edges dashed."""
    ids = _node_ids(plan)
    lines = [
        f"digraph {_dot_quote(plan.kind)} {{",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica"];',
    ]
    for sid, step in plan.steps.items():
        shape = ", shape=ellipse, style=dashed" if step.kind == "state" else ""
        lines.append(f"  {ids[sid]} [label={_dot_quote(step.title)}{shape}];")
    for sid, step in plan.steps.items():
        for dep in step.deps:
            lines.append(f"  {ids[dep]} -> {ids[sid]};")
        for dep in step.on_failure_of:
            lines.append(
                f'  {ids[dep]} -> {ids[sid]} [style=dashed, color=red, label="on failure"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_label(text: str) -> str:
    escaped = text.replace("&", "#amp;").replace('"', "#quot;").replace("\n", " ")
    return f'"{escaped}"'


def graph_mermaid(plan: Plan) -> str:
    """The step graph as a Mermaid flowchart; failure handlers' edges dotted."""
    ids = _node_ids(plan)
    lines = ["flowchart TD"]
    for sid, step in plan.steps.items():
        label = _mermaid_label(step.title)
        lines.append(
            f"  {ids[sid]}([{label}])" if step.kind == "state" else f"  {ids[sid]}[{label}]"
        )
    for sid, step in plan.steps.items():
        for dep in step.deps:
            lines.append(f"  {ids[dep]} --> {ids[sid]}")
        for dep in step.on_failure_of:
            lines.append(f"  {ids[dep]} -.->|on failure| {ids[sid]}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ orch logs

LOG_JSON_VERSION = 1


@dataclass(frozen=True)
class LogRecord:
    """One thing ``orch logs`` shows: an operation (its header), one line of its output, or a
    note. ``live`` marks lines yielded while following, which interleave."""

    kind: str
    """operation, line or note."""
    op: OperationRow | None = None
    stream: str = ""
    """stdout or stderr, for a line ('' for a line of unknown origin)."""
    text: str = ""
    live: bool = False


def _header(op: OperationRow) -> str:
    where = f" on {op.host}" if op.host and op.host != "-" else ""
    if op.status == "running":
        return f"== {_op_title(op)}{where}: running =="
    message = f": {op.message}" if op.message and op.status != "ok" else ""
    return f"== {_op_title(op)}{where}: {_op_result(op)}{message} =="


_STREAMS = {"out": "stdout", "err": "stderr"}


def _split_log_line(raw: str) -> tuple[str, str]:
    """A log file line ('out <text>' / 'err <text>') as (stream, text)."""
    tag, _, text = raw.partition(" ")
    if tag in _STREAMS:
        return _STREAMS[tag], text
    return "", raw


def log_text(record: LogRecord) -> str:
    """A record as ``orch logs`` prints it: headers in '== ... ==', stderr lines marked,
    followed lines prefixed with their operation."""
    if record.kind == "operation" and record.op is not None:
        return _header(record.op)
    if record.kind == "note":
        return f"== {record.text} =="
    text = f"[stderr] {record.text}" if record.stream == "stderr" else record.text
    if record.live and record.op is not None:
        return f"{_op_title(record.op)} | {text}"
    return text


def log_json(record: LogRecord) -> dict[str, Any]:
    """A record as ``orch logs --format json`` prints it, one object per line:

    - ``{"kind": "operation", "id", "run_id", "step", "instance", "node", "operation", "host",
      "status", "rc", "started", "ended", "elapsed", "attempt", "message"}``: an operation, when
      it is first shown and, while following, again when it ends;
    - ``{"kind": "line", "operation_id", "instance", "node", "operation", "stream", "text"}``:
      one line of its output (``stream``: stdout or stderr);
    - ``{"kind": "note", "text"}``.

    Each has ``"version": 1``; fields are only ever added within a version."""
    head: dict[str, Any] = {"version": LOG_JSON_VERSION, "kind": record.kind}
    op = record.op
    if record.kind == "operation" and op is not None:
        return {**head, **_op_dict(op)}
    if record.kind == "line" and op is not None:
        return {
            **head,
            "operation_id": op.id,
            "instance": op.instance,
            "node": op.node,
            "operation": f"{op.interface}.{op.operation}",
            "stream": record.stream,
            "text": record.text,
        }
    return {**head, "text": record.text}


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
"""What a terminal would obey rather than show: C0 but tab and newline, DEL, C1, the bidi
overrides, and undecodable bytes (surrogate escapes)."""


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    r"""``text`` made safe for a terminal: control characters become visible escapes
    (``\x1b[2J`` is printed as the six characters ``\x1b[2J``), so a script's output cannot
    move the cursor, clear the screen or retitle the window. Tabs and newlines stay."""
    return _CONTROLS.sub(_escaped, text)


class _LogTail:
    """Reads an operation's log file as it grows, whole lines only."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def skip_to_last(self, count: int, *, final: bool) -> None:
        """Start at the last ``count`` lines written so far (an unfinished last line counts
        when ``final``), reading the file backwards a block at a time."""
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                data, pos = b"", size
                while pos > 0 and data.count(b"\n") <= count:
                    step = min(1 << 16, pos)
                    pos -= step
                    f.seek(pos)
                    data = f.read(step) + data
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        if final and lines[-1]:
            kept = b"\n".join(lines[-count:]) if count else b""
        else:
            kept = b"\n".join(lines[-(count + 1) :])
        self.offset = size - len(kept)

    def read(self, *, final: bool = False) -> list[tuple[str, str]]:
        """New whole lines as (stream, text); with ``final``, an unfinished last one too."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:  # the worker has not opened it yet
            data = b""
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [_split_log_line(line.decode("utf-8", "replace")) for line in lines]


def log_lines(
    store: Store,
    name: str,
    operation_rows: Sequence[OperationRow],
    follow: bool = False,
    *,
    match: Callable[[OperationRow], bool] | None = None,
    interval: float = POLL_INTERVAL,
    tail: int | None = None,
) -> Iterator[str]:
    """``log_records`` as text lines (``log_text``)."""
    for record in log_records(
        store, name, operation_rows, follow, match=match, interval=interval, tail=tail
    ):
        yield log_text(record)


def log_records(
    store: Store,
    name: str,
    operation_rows: Sequence[OperationRow],
    follow: bool = False,
    *,
    match: Callable[[OperationRow], bool] | None = None,
    interval: float = POLL_INTERVAL,
    tail: int | None = None,
) -> Iterator[LogRecord]:
    """``orch logs NAME [--follow]``: each operation (of ``operation_rows`` that ``match``
    accepts, all if None), then its output lines (the last ``tail`` only, if given).

    With ``follow``, while a run of the deployment is running, its operations' new lines are
    yielded as they come (``live``: they interleave), and an operation record again when each
    ends; operations it starts later are picked up too, those ``match`` accepts. Stops when that
    run ends, when its process is gone, or at once if no run is running."""
    run = _running_run(store, name) if follow else None
    # the newest event before the operations are read: an operation begun since is either in
    # the store already or announced by a later step-start event
    after_id = _last_event_id(store, name) if run is not None else 0
    tails: dict[int, tuple[OperationRow, _LogTail]] = {}
    seen = {op.id for op in operation_rows}
    for op in operation_rows:
        if match is not None and not match(op):
            continue
        yield LogRecord("operation", op)
        reader = _LogTail(store.log_path(name, op.id))
        if tail is not None:
            reader.skip_to_last(tail, final=op.status != "running")
        yield from _records(op, reader.read(final=op.status != "running"))
        if run is not None and op.status == "running" and op.run_id == run.id:
            tails[op.id] = (op, reader)
    if run is None:
        return
    newest = max(seen, default=0)
    for op in store.operations(name, run.id):
        if op.id > newest and op.status == "running" and (match is None or match(op)):
            seen.add(op.id)
            yield LogRecord("operation", op)
            tails[op.id] = (op, _LogTail(store.log_path(name, op.id)))
    from orch.state.lock import pid_alive

    checked = time.monotonic()
    while True:
        ended = False
        started: list[OperationRow] = []
        for event in store.events(name, after_id):
            after_id = event.id
            if event.run_id != run.id:
                continue
            if event.kind == "run-end":
                ended = True
            elif event.kind == "step-start" and event.data.get("operation_id") is not None:
                op = store.operation(int(event.data["operation_id"]))
                if op is not None and op.id not in seen and (match is None or match(op)):
                    seen.add(op.id)
                    started.append(op)
        # what the running ones wrote and how they ended, before the new ones' headers
        for op_id, entry in list(tails.items()):
            yield from _follow_records(entry)
            current = store.operation(op_id)
            if ended or current is None or current.status != "running":
                del tails[op_id]
                yield from _follow_records(entry, final=True)
                yield LogRecord("operation", current or entry[0])
        for op in started:
            current = store.operation(op.id) or op
            yield LogRecord("operation", current)
            reader = _LogTail(store.log_path(name, op.id))
            if ended or current.status != "running":  # over already: shown as without follow
                yield from _records(current, reader.read(final=True))
            else:
                tails[op.id] = (current, reader)
                yield from _follow_records(tails[op.id])
        if ended:
            return
        if time.monotonic() - checked > 1.0:
            checked = time.monotonic()
            if not pid_alive(run.pid):
                for entry in tails.values():
                    yield from _follow_records(entry, final=True)
                yield LogRecord("note", text=f"the run's process (pid {run.pid}) is gone")
                return
        time.sleep(interval)


def _records(
    op: OperationRow, lines: list[tuple[str, str]], *, live: bool = False
) -> Iterator[LogRecord]:
    for stream, text in lines:
        yield LogRecord("line", op, stream, text, live)


def _follow_records(
    entry: tuple[OperationRow, _LogTail], *, final: bool = False
) -> Iterator[LogRecord]:
    op, reader = entry
    yield from _records(op, reader.read(final=final), live=True)


def _running_run(store: Store, name: str) -> RunRow | None:
    running = [r for r in store.runs(name) if r.status == "running"]
    return running[-1] if running else None


def _last_event_id(store: Store, name: str) -> int:
    """The id of the deployment's newest event, read a page at a time."""
    last = 0
    while True:
        page = store.events(name, last, limit=1000)
        if not page:
            return last
        last = page[-1].id
