"""What the deployment commands print: views of the store and plans, and the deploy progress
(JSON lines, plain lines, the rich live view)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orch.cli.progress import JsonProgress, LiveProgress, PlainProgress, make_listener
from orch.cli.views import (
    deployments_table,
    graph_dot,
    graph_mermaid,
    log_lines,
    outputs_view,
    plan_view,
    status_view,
)
from orch.engine.events import Event
from orch.plan.steps import Instance, Plan, Step
from orch.state import Deployment, InstanceRow, OperationRow, Store

T0 = 1_700_000_000.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ------------------------------------------------------------------------------ fixtures


def op_row(op_id: int, instance: str, operation: str, status: str, **kw: object) -> OperationRow:
    interface, _, name = operation.partition(".")
    values: dict = {
        "id": op_id,
        "run_id": 1,
        "deployment": "d",
        "step": f"{instance}:{operation}",
        "node": instance.split("/")[0],
        "instance": instance,
        "interface": interface,
        "operation": name,
        "host": "localhost",
        "status": status,
        "rc": 0 if status == "ok" else None,
        "started": T0,
        "ended": T0 + 0.25,
        "outputs": {},
        "stdout_tail": [],
        "stderr_tail": [],
        "message": "",
        "attempt": 1,
    }
    values.update(kw)
    return OperationRow(**values)


def deployment(name: str = "d", status: str = "deployed") -> Deployment:
    return Deployment(name, "bp/app.yaml", {}, {"password": "hunter2"}, status, T0, T0 + 60)


def small_plan() -> Plan:
    """a and b in parallel; c after both; d after a only (not obvious); e handles c's failure."""
    steps = [
        Step("a/0:Standard.create", "operation", "a", "a/0", "Standard", "create"),
        Step("b/0:Standard.create", "operation", "b", "b/0", "Standard", "create"),
        Step("c/0:Standard.create", "operation", "c", "c/0", "Standard", "create",
             deps=["a/0:Standard.create", "b/0:Standard.create"]),
        Step("a/0:started", "state", "a", "a/0", state_after="started",
             deps=["a/0:Standard.create"]),
        Step("c/0:Standard.start", "operation", "c", "c/0", "Standard", "start",
             deps=["c/0:Standard.create"]),
        Step("c/0:Standard.delete", "operation", "c", "c/0", "Standard", "delete",
             on_failure_of=["c/0:Standard.start"], label="clean \"up\""),
    ]  # fmt: skip
    instances = {i: Instance(i, i[0], 0) for i in ("a/0", "b/0", "c/0")}
    return Plan("deploy", instances, {s.id: s for s in steps})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / ".orch")
    s.create_deployment("d", "bp.yaml", {}, {})
    yield s
    s.close()


# ------------------------------------------------------------------------------ orch list


def test_deployments_table_text_aligns_columns_and_counts_started_instances():
    rows = [deployment("alpha"), deployment("a-much-longer-name", status="failed")]
    instances = {
        "alpha": [
            InstanceRow("alpha", "w/0", "w", "started"),
            InstanceRow("alpha", "w/1", "w", "initial"),
        ]
    }
    text = deployments_table(rows, "text", instances)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "BLUEPRINT", "UPDATED", "INSTANCES"]
    # every column starts at the same offset on every line
    status_col = lines[0].index("STATUS")
    assert lines[1][status_col:].startswith("deployed") and lines[2][status_col:].startswith(
        "failed"
    )
    assert lines[1].endswith("1/2 started") and lines[2].endswith("0")
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(T0 + 60)) in lines[1]
    assert "hunter2" not in text
    assert deployments_table([], "text") == ""


def test_deployments_table_json_is_a_list_of_dicts():
    rows = [deployment("alpha")]
    data = json.loads(
        deployments_table(rows, "json", {"alpha": [InstanceRow("alpha", "w/0", "w", "started")]})
    )
    assert data[0]["name"] == "alpha" and data[0]["status"] == "deployed"
    assert data[0]["instances"] == {"total": 1, "states": {"started": 1}}
    assert data[0]["updated"].startswith(time.strftime("%Y-%m-%dT", time.localtime(T0 + 60)))
    assert "inputs" not in data[0]
    assert json.loads(deployments_table([], "json")) == []
    with pytest.raises(ValueError):
        deployments_table(rows, "yaml")


# ------------------------------------------------------------------------------ orch status


def test_status_view_shows_last_operation_per_instance_and_unresolved_failures():
    instances = [
        InstanceRow("d", "web/0", "web", "configured"),
        InstanceRow("d", "db/0", "db", "started"),
        InstanceRow("d", "vm/0", "vm", "initial"),
    ]
    operations = [
        op_row(1, "db/0", "Standard.create", "failed", rc=3, message="exit status 3",
               stderr_tail=["no space left"]),
        op_row(2, "db/0", "Standard.create", "ok", run_id=2),  # fixed by the next run
        op_row(3, "web/0", "Standard.configure", "ok"),
        op_row(4, "web/0", "Standard.start", "timeout", rc=None, message="timed out after 5s",
               stdout_tail=["starting", "waiting"], host="root@10.0.0.1:22"),
    ]  # fmt: skip
    text = status_view(deployment(), instances, operations, "text")
    assert text.startswith("deployment d: deployed\n")
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line[:3] in ("web", "db/", "vm/")
    }
    assert rows["web/0"][:4] == ["web/0", "configured", "Standard.start", "timeout"]
    assert rows["db/0"][:5] == ["db/0", "started", "Standard.create", "ok", "0"]
    assert rows["vm/0"] == ["vm/0", "initial", "-"]
    failures = text.split("1 failed operation:\n")[1]
    assert (
        "web/0 Standard.start on root@10.0.0.1:22: timeout (0.25s): timed out after 5s" in failures
    )
    assert "      starting\n      waiting\n" in failures
    assert "no space left" not in text  # db/0's failure was fixed by a later run
    link = op_row(5, "web/0>db/0#1", "Configure.add_target", "failed", rc=1)
    text = status_view(deployment(), instances, [*operations, link], "text")
    assert "2 failed operations:\n" in text
    assert "  web/0 -> db/0 Configure.add_target on localhost: failed (rc 1, 0.25s)\n" in text

    data = json.loads(status_view(deployment(), instances, operations, "json"))
    by_id = {i["id"]: i for i in data["instances"]}
    assert by_id["web/0"]["last_operation"]["status"] == "timeout"
    assert by_id["vm/0"]["last_operation"] is None
    assert [f["id"] for f in data["failures"]] == [4]
    assert data["failures"][0]["tail"] == ["starting", "waiting"]
    assert "hunter2" not in json.dumps(data)


# ------------------------------------------------------------------------------ orch outputs


def test_outputs_view_formats():
    outputs = {"url": "http://x:80", "ports": [80, 443], "nothing": None, "a": {"b": 1}}
    assert json.loads(outputs_view(outputs, "json")) == outputs
    dumped = outputs_view(outputs, "yaml")
    assert yaml.safe_load(dumped) == outputs
    keys = [line.split(":")[0] for line in dumped.splitlines() if not line.startswith((" ", "-"))]
    assert keys == ["url", "ports", "nothing", "a"]
    assert outputs_view(outputs, "text") == (
        'url: http://x:80\nports: [80, 443]\nnothing: null\na: {"b": 1}\n'
    )
    assert outputs_view({}, "text") == ""


# ------------------------------------------------------------------------------ orch plan / graph


def test_plan_view_text_lists_waves_parallelism_and_non_obvious_deps():
    text = plan_view(small_plan(), "text")
    assert text.splitlines() == [
        "deploy plan: 6 steps (5 operations) in 4 waves",
        "wave 1 (2 in parallel):",
        "  a/0 Standard.create",
        "  b/0 Standard.create",
        "wave 2 (2 in parallel):",
        "  c/0 Standard.create",  # after the whole previous wave: obvious
        "  a/0 -> started",  # after its own instance's previous step: obvious
        "wave 3:",
        "  c/0 Standard.start",
        "wave 4:",
        '  clean "up": c/0 Standard.delete  (on failure of c/0 Standard.start)',
    ]
    plan = small_plan()
    plan.steps["c/0:Standard.start"].deps.append("a/0:Standard.create")
    assert "c/0 Standard.start  (after c/0 Standard.create, a/0 Standard.create)" in plan_view(plan)
    assert json.loads(plan_view(small_plan(), "json")) == json.loads(
        json.dumps(small_plan().to_dict())
    )


def test_graph_dot_sanitizes_ids_and_dashes_failure_edges():
    plan = small_plan()
    # two ids that sanitize alike must stay two nodes
    plan.steps["a:0"] = Step("a:0", "operation", "a", "a/0", "X", "y", deps=["a/0:Standard.create"])
    plan.steps["a/0"] = Step("a/0", "operation", "a", "a/0", "X", "z")
    dot = graph_dot(plan)
    assert dot.startswith('digraph "deploy" {\n') and dot.endswith("}\n")
    nodes = re.findall(r"^  (\w+) \[label=", dot, re.M)
    assert len(nodes) == len(set(nodes)) == len(plan.steps)
    assert all(re.fullmatch(r"s_\w+", n) for n in nodes)
    edges = re.findall(r"^  (\w+) -> (\w+)( \[.*\])?;$", dot, re.M)
    assert len(edges) == sum(len(s.deps) + len(s.on_failure_of) for s in plan.steps.values())
    failure = [e for e in edges if e[2]]
    assert (
        len(failure) == 1
        and "style=dashed" in failure[0][2]
        and 'label="on failure"' in failure[0][2]
    )
    assert '[label="a/0 -> started", shape=ellipse' in dot
    assert set(nodes) >= {a for a, _, _ in edges} | {b for _, b, _ in edges}


def test_graph_mermaid_edges_labels_and_escaping():
    plan = small_plan()
    plan.steps["q"] = Step("q", "operation", "q", "q/0", "I", 'say "hi"')
    mermaid = graph_mermaid(plan)
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  s_c_0_Standard_create["c/0 Standard.create"]' in lines
    assert '  s_a_0_started(["a/0 -> started"])' in lines
    assert "  s_a_0_Standard_create --> s_c_0_Standard_create" in lines
    assert "  s_c_0_Standard_start -.->|on failure| s_c_0_Standard_delete" in lines
    assert '  s_q["q/0 I.say #quot;hi#quot;"]' in lines
    arrows = [line for line in lines if "-->" in line or "-.->" in line]
    assert len(arrows) == 5


# ------------------------------------------------------------------------------ orch logs


def _operation(store: Store, run_id: int, instance: str, lines: list[str]) -> int:
    op_id = store.begin_operation(run_id, "d", f"{instance}:Standard.create", instance[:-2],
                                  instance, "Standard", "create", "localhost")  # fmt: skip
    store.log_path("d", op_id).write_text("".join(line + "\n" for line in lines))
    return op_id


def _finish(store: Store, op_id: int, status: str = "ok", rc: int = 0) -> None:
    message = "" if status == "ok" else "exit status 2"
    store.finish_operation(op_id, status=status, rc=rc, outputs={}, stdout_tail=[],
                           stderr_tail=[], message=message)  # fmt: skip


def test_log_lines_prints_headers_then_lines(store: Store):
    run = store.begin_run("d", "deploy")
    first = _operation(store, run, "web/0", ["out hello", "err oops", "out bye"])
    _finish(store, first)
    second = _operation(store, run, "db/0", ["out x"])
    _finish(store, second, "failed", 2)
    store.end_run(run, "failed")
    lines = list(log_lines(store, "d", store.operations("d"), follow=True))  # nothing is running
    assert re.fullmatch(
        r"== web/0 Standard.create on localhost: ok \(rc 0, \d+\.\d\ds\) ==", lines[0]
    )
    assert lines[1:4] == ["hello", "[stderr] oops", "bye"]
    assert re.fullmatch(
        r"== db/0 Standard.create on localhost: failed \(rc 2, \d+\.\d\ds\): exit status 2 ==",
        lines[4],
    )
    assert lines[5:] == ["x"]


def test_log_lines_follows_the_running_run_until_it_ends(store: Store):
    run = store.begin_run("d", "deploy")
    running = _operation(store, run, "web/0", ["out early"])
    rows = store.operations("d")
    done = threading.Event()

    def engine() -> None:
        # another writer, as the engine in another process would be
        with Store.open(store.root) as other:
            time.sleep(0.3)
            with open(other.log_path("d", running), "a") as log:
                log.write("out later\nout part")
                log.flush()
                time.sleep(0.3)
                log.write("ial\n")
            _finish(other, running)
            new = _operation(other, run, "db/0", ["out from db"])
            other.add_event("d", run, "step-start", step="db/0:Standard.create",
                            data={"operation_id": new})  # fmt: skip
            time.sleep(0.3)
            _finish(other, new)
            other.add_event("d", run, "run-end", data={"status": "ok"})
            other.end_run(run, "ok")
        done.set()

    thread = threading.Thread(target=engine)
    thread.start()
    started = time.monotonic()
    lines = list(log_lines(store, "d", rows, follow=True, interval=0.05))
    thread.join()
    assert done.is_set() and time.monotonic() - started < 10
    assert lines[0] == "== web/0 Standard.create on localhost: running =="
    assert lines[1] == "early"
    assert lines[2:4] == ["web/0 Standard.create | later", "web/0 Standard.create | partial"]
    assert lines[4].startswith("== web/0 Standard.create on localhost: ok (rc 0,")
    assert lines[5] == "== db/0 Standard.create on localhost: running =="
    assert "db/0 Standard.create | from db" in lines
    assert lines[-1].startswith("== db/0 Standard.create on localhost: ok (rc 0,")


# ------------------------------------------------------------------------------ progress


def ev(kind: str, at: float, **kw: object) -> Event:
    return Event(kind, "d", time=T0 + at, **kw)  # type: ignore[arg-type]


def step_events(instance: str, at: float, status: str = "ok", **data: object) -> list[Event]:
    title = f"{instance} Standard.create"
    step = f"{instance}:Standard.create"
    end = {"title": title, "status": status, "rc": 0 if status == "ok" else 3, "elapsed": 0.02,
           "host": "localhost", "tail": [], "outputs": []}  # fmt: skip
    end.update(data)
    message = title if status == "ok" else "exit status 3"
    return [
        ev("step-start", at, node=instance[:-2], instance=instance, step=step, message=title,
           data={"interface": "Standard", "operation": "create", "host": end["host"],
                 "attempt": 1, "operation_id": 1}),
        ev("state", at, instance=instance, data={"state": "creating"}),
        ev("output", at + 0.01, instance=instance, step=step, message="hello",
           data={"stream": "stdout"}),
        ev("step-end", at + 0.02, node=instance[:-2], instance=instance, step=step,
           message=message, data=end),
    ]  # fmt: skip


def run_events() -> list[Event]:
    return [
        ev("run-start", 0, data={"action": "deploy", "steps": 4, "operations": 3, "done": 0,
                                 "workers": 2}),
        *step_events("web/0", 0.39),
        *step_events("db/0", 1.0, "failed", host="root@127.0.0.1:2222", tail=["boom", "bang"]),
        ev("step-skip", 1.1, node="app", instance="app/0", step="app/0:Standard.create",
           message="app/0 Standard.create", data={"reason": "a step it needs did not succeed"}),
        ev("message", 1.2, message="stopping: waiting for 0 running operation(s)"),
        ev("run-end", 1.5, data={"status": "failed", "ran": 2, "succeeded": 1, "failed": 1,
                                 "skipped": 1, "done_before": 0, "elapsed": 1.5}),
    ]  # fmt: skip


def feed(progress, events: list[Event]) -> None:
    with progress:
        for event in events:
            progress(event)


def test_plain_progress_lines():
    stream = io.StringIO()
    feed(PlainProgress(stream, verbosity=0), run_events())
    assert stream.getvalue().splitlines() == [
        "[  0.41s] ok      web/0 Standard.create (localhost, 0.02s)",
        "[  1.02s] failed  db/0 Standard.create on root@127.0.0.1:2222: exit status 3",
        "    boom",
        "    bang",
        "[  1.10s] skipped app/0 Standard.create: a step it needs did not succeed",
        "[  1.20s] note    stopping: waiting for 0 running operation(s)",
    ]


def test_plain_progress_verbosity_and_color():
    verbose = io.StringIO()
    feed(PlainProgress(verbose, verbosity=1), run_events())
    lines = verbose.getvalue().splitlines()
    assert lines[0] == "deploy: 3 operations, 2 workers"
    assert lines[1] == "[  0.39s] start   web/0 Standard.create on localhost"
    assert "[  0.40s]         web/0 | hello" in lines
    assert not any(" state " in line for line in lines)

    quiet = io.StringIO()
    feed(PlainProgress(quiet, verbosity=-1), run_events())
    labels = re.findall(r"^\[ *[\d.]+s\] (\w+)", quiet.getvalue(), re.M)
    assert labels == ["failed"]
    assert quiet.getvalue().splitlines()[-1] == "    bang"  # the verdict is the command's

    colored = io.StringIO()
    feed(PlainProgress(colored, color=True), run_events())
    assert "\x1b[31mfailed \x1b[0m" in colored.getvalue()
    assert (
        ANSI.sub("", colored.getvalue())
        .splitlines()[0]
        .endswith("web/0 Standard.create (localhost, 0.02s)")
    )


def test_json_progress_one_object_per_line():
    out = io.StringIO()
    feed(
        make_listener("json", out=out, stream=io.StringIO(), color=False, verbosity=0), run_events()
    )
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["version"] == 1 and r["deployment"] == "d" for r in records)
    kinds = [r["kind"] for r in records]
    assert "output" not in kinds and kinds[0] == "run-start" and kinds[-1] == "run-end"
    assert len(records) == len(run_events()) - 2
    failed = next(r for r in records if r["kind"] == "step-end" and r["data"]["status"] == "failed")
    assert failed["data"]["tail"] == ["boom", "bang"] and failed["instance"] == "db/0"

    verbose = io.StringIO()
    feed(JsonProgress(verbose, verbosity=1), run_events())
    assert (
        sum(json.loads(line)["kind"] == "output" for line in verbose.getvalue().splitlines()) == 2
    )


def test_json_progress_survives_a_closed_pipe():
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError

    progress = JsonProgress(Broken())
    for event in run_events():
        progress(event)  # does not raise: the deployment goes on


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_listener_chooses_by_format_and_terminal():
    assert isinstance(
        make_listener("text", stream=io.StringIO(), color=False, verbosity=0), PlainProgress
    )
    assert isinstance(
        make_listener("text", stream=Terminal(), color=False, verbosity=-1), PlainProgress
    )
    live = make_listener("text", stream=Terminal(), color=True, verbosity=0)
    try:
        assert isinstance(live, LiveProgress)
    finally:
        live.close()
    with pytest.raises(ValueError):
        make_listener("xml", color=False, verbosity=0)


def synthetic(count: int) -> list[Event]:
    events = [ev("run-start", 0, data={"action": "deploy", "steps": count, "operations": count,
                                       "done": 0, "workers": 8})]  # fmt: skip
    for i in range(count):
        status = "failed" if i % 10 == 7 else "ok"
        events.extend(step_events(f"n{i % 40}/{i // 40}", i * 0.01, status, tail=[f"tail of {i}"]))
    failed = len(range(7, count, 10))
    end = {"status": "failed", "succeeded": count - failed, "failed": failed, "skipped": 0,
           "elapsed": 2.0}  # fmt: skip
    events.append(ev("run-end", count * 0.01, data=end))
    return events


def test_live_progress_on_a_terminal():
    stream = Terminal()
    progress = make_listener("text", stream=stream, color=True, verbosity=1)
    assert isinstance(progress, LiveProgress)
    assert progress.console.is_terminal
    events = synthetic(50)
    with progress:
        for i, event in enumerate(events):
            progress(event)
            if i == len(events) // 2:
                time.sleep(0.3)  # let the refresh thread draw a few frames mid-run
    progress.close()  # idempotent
    text = ANSI.sub("", stream.getvalue())
    assert "\x1b[" in stream.getvalue()  # drawn in place, in colour
    assert "✗ failed: n7/0 Standard.create on localhost: exit status 3 (rc 3, 0.02s)" in text
    assert "    tail of 7" in text
    assert "n3/0 | hello" in text  # output lines, at verbosity 1
    assert "operations done" in text  # a frame drawn while running
    assert text.rstrip().endswith("deploy failed in 2.0s: 45 succeeded, 5 failed, 0 skipped")
    assert progress.board.counts["ok"] == 45 and progress.board.counts["failed"] == 5


def test_live_progress_is_cheap_and_closes_on_interrupt():
    from rich.console import Console

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, height=30)
    progress = LiveProgress(console, verbosity=0)
    events = synthetic(500)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), progress:
        for event in events[:-1]:
            progress(event)
        raise KeyboardInterrupt
    assert time.perf_counter() - started < 5
    assert not progress._live.is_started
    text = ANSI.sub("", stream.getvalue())
    assert "… " in text and "more instances" in text  # 500 instances do not fit in 30 lines
    assert "✗ failed: n17/12 Standard.create" in text  # step 497, the last to fail
    with console.capture() as frame:
        console.print(progress._live.renderable)
    lines = frame.get().splitlines()
    assert len(lines) <= 30 and "operations done" in lines[-1]
    assert sum("⠋" in line or "✓" in line or "✗" in line for line in lines) >= 20
    assert "n3/0 | hello" not in text  # output lines only with -v
    assert progress.board.counts["ok"] == 450 and progress.board.counts["failed"] == 50


def test_modules_do_not_import_rich():
    code = (
        "import sys, orch.cli.progress, orch.cli.views; sys.exit(1 if 'rich' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
