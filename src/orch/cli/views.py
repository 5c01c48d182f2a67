"""What ``orch list``, ``status``, ``outputs``, ``plan``, ``graph`` and ``logs`` print.

Pure functions from store rows or plans to strings (``log_lines`` yields lines), so the commands
only choose streams and formats, and tests need no terminal. Nothing here prints inputs or
attributes: they may hold secrets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
) -> str:
    """``orch status NAME``: the deployment, each instance's state and last operation, the jobs
    it ran (one row per execution), and the operations that failed and were not run again
    since."""
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
    if failures:
        text += f"\n{len(failures)} failed operation{'s' if len(failures) != 1 else ''}:\n"
        for op in failures:
            where = f" on {op.host}" if op.host and op.host != "-" else ""
            text += f"  {_op_title(op)}{where}: {_op_result(op)}"
            text += f": {op.message}\n" if op.message else "\n"
            text += "".join(f"      {line}\n" for line in _tail(op))
    return text


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


def plan_view(plan: Plan, fmt: str = "text") -> str:
    """``orch plan``: the steps wave by wave (json: ``plan.to_dict()``).

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
    return "\n".join(lines) + "\n"


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


def _header(op: OperationRow) -> str:
    where = f" on {op.host}" if op.host and op.host != "-" else ""
    if op.status == "running":
        return f"== {_op_title(op)}{where}: running =="
    message = f": {op.message}" if op.message and op.status != "ok" else ""
    return f"== {_op_title(op)}{where}: {_op_result(op)}{message} =="


def _log_line(raw: str) -> str:
    """A log file line ('out <text>' / 'err <text>') as shown: stderr lines are marked."""
    stream, _, text = raw.partition(" ")
    if stream == "out":
        return text
    if stream == "err":
        return f"[stderr] {text}"
    return raw


class _LogTail:
    """Reads an operation's log file as it grows, whole lines only."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self, *, final: bool = False) -> list[str]:
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
        return [_log_line(line.decode("utf-8", "replace")) for line in lines]


def log_lines(
    store: Store,
    name: str,
    operation_rows: Sequence[OperationRow],
    follow: bool = False,
    *,
    match: Callable[[OperationRow], bool] | None = None,
    interval: float = POLL_INTERVAL,
) -> Iterator[str]:
    """``orch logs NAME [--follow]``: each operation's header, then its output lines.

    With ``follow``, while a run of the deployment is running, its operations' new lines are
    yielded as they come (prefixed with the operation, since they interleave, and closed by a
    header saying how it ended); operations it starts later are picked up too, those ``match``
    accepts (all if None). Stops when that run ends, when its process is gone, or at once if no
    run is running."""
    run = _running_run(store, name) if follow else None
    # the newest event before the operations are read: an operation begun since is either in
    # the store already or announced by a later step-start event
    after_id = _last_event_id(store, name) if run is not None else 0
    tails: dict[int, tuple[OperationRow, _LogTail]] = {}
    seen = {op.id for op in operation_rows}
    for op in operation_rows:
        yield _header(op)
        tail = _LogTail(store.log_path(name, op.id))
        yield from tail.read(final=op.status != "running")
        if run is not None and op.status == "running" and op.run_id == run.id:
            tails[op.id] = (op, tail)
    if run is None:
        return
    newest = max(seen, default=0)
    for op in store.operations(name, run.id):
        if op.id > newest and op.status == "running" and (match is None or match(op)):
            seen.add(op.id)
            yield _header(op)
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
            yield from _follow_lines(entry)
            current = store.operation(op_id)
            if ended or current is None or current.status != "running":
                del tails[op_id]
                yield from _follow_lines(entry, final=True)
                yield _header(current or entry[0])
        for op in started:
            current = store.operation(op.id) or op
            yield _header(current)
            tail = _LogTail(store.log_path(name, op.id))
            if ended or current.status != "running":  # over already: shown as without follow
                yield from tail.read(final=True)
            else:
                tails[op.id] = (current, tail)
                yield from _follow_lines(tails[op.id])
        if ended:
            return
        if time.monotonic() - checked > 1.0:
            checked = time.monotonic()
            if not pid_alive(run.pid):
                for entry in tails.values():
                    yield from _follow_lines(entry, final=True)
                yield f"== the run's process (pid {run.pid}) is gone =="
                return
        time.sleep(interval)


def _follow_lines(entry: tuple[OperationRow, _LogTail], *, final: bool = False) -> Iterator[str]:
    op, tail = entry
    prefix = f"{_op_title(op)} | "
    for line in tail.read(final=final):
        yield prefix + line


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
