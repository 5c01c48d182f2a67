"""The state store on a real SQLite database, with real processes killed by SIGKILL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orch.state import (
    SCHEMA_VERSION,
    DeploymentBusy,
    InstanceRow,
    StateError,
    Store,
)

UNICODE = 'héllo ☃ 日本語 😀 "quoted" \\ back\nslash \x00 nul'
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "work" / ".orch"


@pytest.fixture
def store(root: Path) -> Iterator[Store]:
    s = Store.open(root)
    yield s
    s.close()


def hello(store: Store, instances: int = 2) -> None:
    store.create_deployment("hello", "bp/hello.yaml", {"nodes": ["web"]}, {"n": instances})
    store.save_instances(
        "hello", [InstanceRow("hello", f"web/{i}", "web") for i in range(instances)]
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(root: Path) -> sqlite3.Connection:
    """A connection of our own, to look at what the store wrote, bypassing it."""
    return sqlite3.connect(root / "state.db")


Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start ``python -c code args...``; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, *args: object) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        argv = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def line(proc: subprocess.Popen[str]) -> str:
    """The child's next line of output; fails with its stderr when it died instead."""
    assert proc.stdout is not None
    text = proc.stdout.readline()
    if not text:
        proc.wait()
        pytest.fail(f"child exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    return text.strip()


def kill9(proc: subprocess.Popen[str]) -> str:
    """SIGKILL the child, reap it (a zombie's pid still exists) and return its unread output."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return out


HOLDER = """
    import os, subprocess, sys, time
    from orch.state import Store
    store = Store.open(sys.argv[1])
    with store.lock("hello", sys.argv[2]):
        run = store.begin_run("hello", "deploy")
        op = store.begin_operation(run, "hello", "s1", "web", "web/0", "Standard", "create", "h1")
        # an executor's child, e.g. a long script: it must not keep the lock once orch is killed
        child = subprocess.Popen(
            ["sleep", "600"], close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        print(run, op, child.pid, flush=True)
        time.sleep(600)
"""

Hold = Callable[..., tuple[subprocess.Popen[str], int, int]]


@pytest.fixture
def hold(spawn: Spawn, root: Path) -> Iterator[Hold]:
    """Start a child process holding hello's lock with a run and an operation under way."""
    grandchildren: list[int] = []

    def start(action: str = "deploy") -> tuple[subprocess.Popen[str], int, int]:
        proc = spawn(HOLDER, root, action)
        run, op, grandchild = map(int, line(proc).split())
        grandchildren.append(grandchild)
        return proc, run, op

    yield start
    for pid in grandchildren:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- opening -------------------------------------------------------------------------------


def test_open_creates_a_private_dir_and_db_with_the_expected_pragmas(root: Path) -> None:
    old = os.umask(0)  # without the store's care, everything would be world-readable
    try:
        store = Store.open(root)
        hello(store)
        store.lock("hello", "deploy").release()
        log = store.log_path("hello", 1)
        log.touch(0o600)  # as executors do: the store gives the folder, not the file
        blob = store.blob_path(store.put_blob(b"x"), "a.sh")
    finally:
        os.umask(old)
    assert mode(root) == 0o700
    assert mode(root / "state.db") == 0o600
    assert mode(root / "state.db-wal") == 0o600
    assert not (root / "locks").exists()  # the lock is a byte of state.db, not a file
    assert mode(root / "deployments" / "hello" / "deployment.json") == 0o600
    assert {mode(log.parent), mode(log.parent.parent), mode(root / "deployments")} == {0o700}
    assert {mode(blob.parent), mode(root / "blobs")} == {0o700} and mode(blob) == 0o600
    with store._mutex:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


def test_open_leaves_an_existing_folder_mode_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    Store.open(tmp_path).close()
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "state.db") == 0o600


def test_open_without_create_needs_existing_state(root: Path) -> None:
    with pytest.raises(StateError, match="no orch state"):
        Store.open(root, create=False)
    assert not root.exists()
    Store.open(root).close()
    Store.open(root, create=False).close()


def test_a_newer_schema_is_refused(root: Path) -> None:
    Store.open(root).close()
    with raw(root) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="newer orch") as info:
        Store.open(root)
    assert "\n" not in str(info.value)
    with raw(root) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_file_that_is_not_a_database_is_a_state_error(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"state\.db"):
        Store.open(root)


def test_reopening_keeps_everything(root: Path) -> None:
    with Store.open(root) as store:
        hello(store)
    with Store.open(root, create=False) as store:
        assert [d.name for d in store.deployments()] == ["hello"]
        assert [i.id for i in store.instances("hello")] == ["web/0", "web/1"]


# -- deployments ---------------------------------------------------------------------------


def test_deployment_round_trip_with_unicode(store: Store) -> None:
    model = {"nodes": {"wéb": {"props": [1, 2.5, None, True, UNICODE]}}}
    made = store.create_deployment("hello", f"bp/{UNICODE}.yaml", model, {"k": UNICODE})
    got = store.deployment("hello")
    assert got == made
    assert got is not None
    assert (got.blueprint, got.model, got.inputs) == (f"bp/{UNICODE}.yaml", model, {"k": UNICODE})
    assert got.status == "created" and got.outputs == {}
    assert got.created == got.updated


def test_deployment_updates(store: Store) -> None:
    created = store.create_deployment("hello", "a.yaml", {"v": 1}, {})
    store.update_snapshot("hello", "b.yaml", {"v": 2}, {"i": "☃"})
    store.set_status("hello", "deployed")
    store.set_outputs("hello", {"url": "http://ünicode/"})
    got = store.deployment("hello")
    assert got is not None
    assert (got.blueprint, got.model, got.inputs) == ("b.yaml", {"v": 2}, {"i": "☃"})
    assert (got.status, got.outputs) == ("deployed", {"url": "http://ünicode/"})
    assert got.created == created.created and got.updated >= created.updated


def test_deployments_are_listed_by_name(store: Store) -> None:
    for name in ("zeta", "alpha", "mid"):
        store.create_deployment(name, "bp.yaml", {}, {})
    assert [d.name for d in store.deployments()] == ["alpha", "mid", "zeta"]
    assert store.deployment("nope") is None


def test_deployment_errors(store: Store) -> None:
    store.create_deployment("hello", "bp.yaml", {}, {})
    with pytest.raises(StateError, match="already exists"):
        store.create_deployment("hello", "other.yaml", {}, {})
    assert store.deployment("hello").blueprint == "bp.yaml"  # type: ignore[union-attr]
    for call in (
        lambda: store.update_snapshot("nope", "x", {}, {}),
        lambda: store.set_status("nope", "deployed"),
        lambda: store.set_outputs("nope", {}),
    ):
        with pytest.raises(StateError, match="no deployment 'nope'"):
            call()


INVALID_NAMES = [
    "", "../x", "a/b", ".hidden", "a b", "a:b", "x" * 129, "-x", "a\nb", "é/x", "a\x00",
]  # fmt: skip


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_names_that_cannot_be_file_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(StateError, match="invalid deployment name"):
        store.create_deployment(name, "bp.yaml", {}, {})
    with pytest.raises(StateError, match="invalid deployment name"):
        store.lock(name, "deploy")
    with pytest.raises(StateError, match="invalid deployment name"):
        store.log_path(name, 1)
    assert store.deployments() == []


VALID_NAMES = ["a", "x" * 128, "Été_2026", "日本語の計算", "run.1-b_c", "_x", "ü" * 128, "Ω-3"]


def test_names_the_rule_allows_round_trip_exactly_and_never_share_a_folder(
    store: Store, root: Path
) -> None:
    for name in VALID_NAMES:
        store.create_deployment(name, "bp.yaml", {}, {})
        store.log_path(name, 1).write_text(name)
        with store.lock(name, "deploy"):
            pass
    assert [d.name for d in store.deployments()] == sorted(VALID_NAMES)
    folders = list((root / "deployments").iterdir())
    assert len(folders) == len(VALID_NAMES)
    assert all(len(f.name.encode()) <= 255 for f in folders)
    for name in VALID_NAMES:
        assert store.log_path(name, 1).read_text() == name
    assert store.lost_deployments() == []
    with Store.open(root, create=False) as again:
        assert [d.name for d in again.deployments()] == sorted(VALID_NAMES)
        assert again.lost_deployments() == []


# -- blobs ---------------------------------------------------------------------------------


def test_blobs_are_content_addressed_and_idempotent(store: Store, root: Path) -> None:
    data = b"#!/bin/sh\necho \xe2\x98\x83\n\x00\xff"
    sha = store.put_blob(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.put_blob(data) == sha
    assert store.blob(sha) == data
    with raw(root) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
    with pytest.raises(StateError, match="no blob"):
        store.blob("0" * 64)


def test_blob_path_materialises_once(store: Store, root: Path) -> None:
    data = b"echo hi\n" * 1000
    sha = store.put_blob(data)
    path = store.blob_path(sha, "scripts/create.sh")
    assert path == root / "blobs" / sha / "create.sh"
    assert path.read_bytes() == data
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    before = path.stat()
    again = store.blob_path(sha, "other/dir/create.sh")
    assert again == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in path.parent.iterdir()] == ["create.sh"]  # no temporary left behind


def test_blob_path_rewrites_a_damaged_copy(store: Store) -> None:
    data = b"0123456789" * 10
    sha = store.put_blob(data)
    path = store.blob_path(sha, "a.txt")
    path.write_bytes(data[:7])  # e.g. cut short by a full disk
    assert store.blob_path(sha, "a.txt").read_bytes() == data


def test_blob_path_errors(store: Store) -> None:
    sha = store.put_blob(b"x")
    with pytest.raises(StateError, match="no blob"):
        store.blob_path("a" * 64, "a.sh")
    with pytest.raises(StateError, match="invalid blob id"):
        store.blob_path("../../etc", "a.sh")
    with pytest.raises(StateError, match="invalid artifact file name"):
        store.blob_path(sha, "scripts/..")


# -- instances -----------------------------------------------------------------------------


def test_save_instances_upserts_keeping_what_is_not_given(store: Store) -> None:
    store.create_deployment("hello", "bp.yaml", {}, {})
    store.save_instances("hello", [InstanceRow("hello", "web/0", "web", attributes={"a": 1})])
    [row] = store.instances("hello")
    assert (row.deployment, row.id, row.node, row.state, row.attributes) == (
        "hello",
        "web/0",
        "web",
        "initial",
        {"a": 1},
    )
    store.update_instances(
        "hello", {"web/0": {"state": "started", "attributes": {"ip": "10.0.0.1"}}}
    )
    store.save_instances(
        "hello",
        [
            InstanceRow("hello", "web/0", "web2", attributes={"b": UNICODE}),
            InstanceRow("hello", "db/0", "db", state="created"),
        ],
    )
    rows = {r.id: r for r in store.instances("hello")}
    assert rows["web/0"].state == "started"
    assert rows["web/0"].node == "web2"
    assert rows["web/0"].attributes == {"a": 1, "ip": "10.0.0.1", "b": UNICODE}
    assert (rows["db/0"].state, rows["db/0"].attributes) == ("created", {})
    store.save_instances("hello", [InstanceRow("hello", "web/0", "web", state="deleted")])
    assert {r.id: r.state for r in store.instances("hello")} == {
        "db/0": "created",
        "web/0": "deleted",
    }


def test_save_instances_refuses_rows_of_another_deployment(store: Store) -> None:
    hello(store)
    with pytest.raises(ValueError, match="not 'hello'"):
        store.save_instances(
            "hello", [InstanceRow("hello", "web/9", "web"), InstanceRow("other", "x/0", "x")]
        )
    assert [r.id for r in store.instances("hello")] == ["web/0", "web/1"]  # all or nothing


def test_update_instances_is_all_or_nothing(store: Store) -> None:
    hello(store)
    with pytest.raises(StateError, match="no instance 'web/7'"):
        store.update_instances("hello", {"web/0": {"state": "started"}, "web/7": {"state": "x"}})
    with pytest.raises(ValueError, match="unknown instance update keys"):
        store.update_instances("hello", {"web/0": {"stat": "started"}})
    assert {r.state for r in store.instances("hello")} == {"initial"}


def test_reset_instances_after_an_undeploy(store: Store) -> None:
    hello(store)
    store.create_deployment("other", "bp.yaml", {}, {})
    store.save_instances("other", [InstanceRow("other", "x/0", "x", "started", {"k": 1})])
    store.update_instances("hello", {"web/0": {"state": "deleted", "attributes": {"ip": "1"}}})
    store.reset_instances("hello")
    assert [(r.id, r.state, r.attributes) for r in store.instances("hello")] == [
        ("web/0", "initial", {}),
        ("web/1", "initial", {}),
    ]
    assert [(r.state, r.attributes) for r in store.instances("other")] == [("started", {"k": 1})]


# -- runs and operations -------------------------------------------------------------------


def test_runs_round_trip(store: Store) -> None:
    hello(store)
    first = store.begin_run("hello", "deploy")
    second = store.begin_run("hello", "run", "sim")
    store.end_run(first, "ok")
    runs = store.runs("hello")
    assert [r.id for r in runs] == [first, second]
    assert (runs[0].action, runs[0].workflow, runs[0].status) == ("deploy", None, "ok")
    assert runs[0].ended is not None and runs[0].ended >= runs[0].started
    assert (runs[1].action, runs[1].workflow, runs[1].status, runs[1].ended) == (
        "run",
        "sim",
        "running",
        None,
    )
    assert {r.pid for r in runs} == {os.getpid()}
    with pytest.raises(ValueError, match="run action"):
        store.begin_run("hello", "destroy")
    with pytest.raises(ValueError, match="run status"):
        store.end_run(second, "done")
    with pytest.raises(StateError, match="no run 999"):
        store.end_run(999, "ok")
    with pytest.raises(StateError, match="no deployment 'nope'"):
        store.begin_run("nope", "deploy")


def test_operation_round_trip_with_unicode(store: Store) -> None:
    hello(store)
    run = store.begin_run("hello", "deploy")
    op = store.begin_operation(
        run, "hello", "web/0:create", "web", "web/0", "Standard", "create", "login1", attempt=2
    )
    row = store.operation(op)
    assert row is not None
    assert (row.id, row.run_id, row.deployment, row.step, row.node, row.instance) == (
        op,
        run,
        "hello",
        "web/0:create",
        "web",
        "web/0",
    )
    assert (row.interface, row.operation, row.host, row.status, row.attempt) == (
        "Standard",
        "create",
        "login1",
        "running",
        2,
    )
    assert (row.rc, row.ended, row.outputs, row.stdout_tail, row.message) == (
        None,
        None,
        {},
        [],
        "",
    )
    store.finish_operation(
        op,
        status="failed",
        rc=3,
        outputs={"ø": UNICODE},
        stdout_tail=["a", UNICODE],
        stderr_tail=["érr"],
        message="exit 3 ☃",
    )
    row = store.operation(op)
    assert row is not None
    assert (row.status, row.rc, row.outputs) == ("failed", 3, {"ø": UNICODE})
    assert (row.stdout_tail, row.stderr_tail, row.message) == (["a", UNICODE], ["érr"], "exit 3 ☃")
    assert row.ended is not None and row.ended >= row.started
    assert store.operation(op + 1000) is None


def test_operations_are_listed_by_deployment_and_run(store: Store) -> None:
    hello(store)
    store.create_deployment("other", "bp.yaml", {}, {})
    run1 = store.begin_run("hello", "deploy")
    run2 = store.begin_run("hello", "run", "sim")
    other = store.begin_run("other", "deploy")
    a = store.begin_operation(run1, "hello", "s1", "web", "web/0", "Standard", "create", "h")
    b = store.begin_operation(run2, "hello", "s2", "web", "web/0", "Standard", "start", "h")
    store.begin_operation(other, "other", "s1", "x", "x/0", "Standard", "create", "h")
    assert [o.id for o in store.operations("hello")] == [a, b]
    assert [o.id for o in store.operations("hello", run2)] == [b]
    assert store.operations("hello", other) == []


def test_operation_errors(store: Store) -> None:
    hello(store)
    store.create_deployment("other", "bp.yaml", {}, {})
    other = store.begin_run("other", "deploy")
    with pytest.raises(StateError):
        store.begin_operation(999, "hello", "s", "web", "web/0", "Standard", "create", "h")
    with pytest.raises(StateError):  # a run of another deployment
        store.begin_operation(other, "hello", "s", "web", "web/0", "Standard", "create", "h")
    assert store.operations("hello") == []
    with pytest.raises(StateError, match="no operation 42"):
        store.finish_operation(
            42, status="ok", rc=0, outputs={}, stdout_tail=[], stderr_tail=[], message=""
        )
    run = store.begin_run("hello", "deploy")
    op = store.begin_operation(run, "hello", "s", "web", "web/0", "Standard", "create", "h")
    with pytest.raises(ValueError, match="operation status"):
        store.finish_operation(
            op, status="running", rc=None, outputs={}, stdout_tail=[], stderr_tail=[], message=""
        )


def test_finish_operation_applies_instance_updates_and_done_step_atomically(store: Store) -> None:
    hello(store)
    run = store.begin_run("hello", "deploy")
    op = store.begin_operation(
        run, "hello", "web/0:create", "web", "web/0", "Standard", "create", "h"
    )
    with pytest.raises(StateError, match="no instance 'web/9'"):
        store.finish_operation(
            op,
            status="ok",
            rc=0,
            outputs={},
            stdout_tail=[],
            stderr_tail=[],
            message="",
            instance_updates={"web/0": {"state": "created"}, "web/9": {"state": "created"}},
            done_step=("deploy", "web/0:create"),
        )
    assert store.operation(op).status == "running"  # type: ignore[union-attr]
    assert store.instances("hello")[0].state == "initial"
    assert store.done_steps("hello", "deploy") == set()

    store.finish_operation(
        op,
        status="ok",
        rc=0,
        outputs={"ip": "10.0.0.5"},
        stdout_tail=[],
        stderr_tail=[],
        message="",
        instance_updates={"web/0": {"state": "created", "attributes": {"ip": "10.0.0.5"}}},
        done_step=("deploy", "web/0:create"),
    )
    assert store.operation(op).status == "ok"  # type: ignore[union-attr]
    web0 = store.instances("hello")[0]
    assert (web0.state, web0.attributes) == ("created", {"ip": "10.0.0.5"})
    assert store.done_steps("hello", "deploy") == {"web/0:create"}


def test_log_path_is_under_the_deployment_folder(store: Store, root: Path) -> None:
    hello(store)
    path = store.log_path("hello", 17)
    assert path == root / "deployments" / "hello" / "logs" / "17.log"
    assert path.parent.is_dir() and not path.exists()


# -- steps done ----------------------------------------------------------------------------


def test_done_steps_per_plan_kind(store: Store) -> None:
    hello(store)
    store.mark_step_done("hello", "deploy", "web/0:initial->creating")
    store.mark_step_done("hello", "deploy", "web/0:initial->creating")  # idempotent
    store.mark_step_done("hello", "deploy", "a", {"web/1": {"state": "creating"}})
    store.mark_step_done("hello", "run:sim", "a")
    assert store.done_steps("hello", "deploy") == {"web/0:initial->creating", "a"}
    assert store.done_steps("hello", "run:sim") == {"a"}
    assert store.done_steps("hello", "undeploy") == set()
    assert {r.id: r.state for r in store.instances("hello")}["web/1"] == "creating"
    store.clear_done_steps("hello", "deploy")
    assert store.done_steps("hello", "deploy") == set()
    assert store.done_steps("hello", "run:sim") == {"a"}


def test_mark_step_done_is_all_or_nothing(store: Store) -> None:
    hello(store)
    with pytest.raises(StateError, match="no instance"):
        store.mark_step_done("hello", "deploy", "s", {"web/0": {"state": "x"}, "nope/0": {}})
    assert store.done_steps("hello", "deploy") == set()
    assert {r.state for r in store.instances("hello")} == {"initial"}


# -- events --------------------------------------------------------------------------------


def test_events_append_and_follow(store: Store, root: Path) -> None:
    hello(store)
    store.create_deployment("other", "bp.yaml", {}, {})
    run = store.begin_run("hello", "deploy")
    first = store.add_event(
        "hello",
        run,
        "operation.started",
        node="web",
        instance="web/0",
        step="s1",
        message=UNICODE,
        data={"ü": [1, "☃"]},
    )
    store.add_event("other", None, "noise")
    second = store.add_event("hello", None, "deployment.status")
    assert second > first
    events = store.events("hello")
    assert [e.id for e in events] == [first, second]
    e = events[0]
    assert (e.deployment, e.run_id, e.kind, e.node, e.instance, e.step) == (
        "hello",
        run,
        "operation.started",
        "web",
        "web/0",
        "s1",
    )
    assert (e.message, e.data) == (UNICODE, {"ü": [1, "☃"]})
    assert (events[1].run_id, events[1].data, events[1].node) == (None, {}, None)
    assert [e.id for e in store.events("hello", after_id=first)] == [second]
    assert [e.id for e in store.events("hello", limit=1)] == [first]
    assert store.events("hello", after_id=second) == []

    # a follower in its own connection sees each commit at its next poll
    with Store.open(root, create=False) as follower:
        third = store.add_event("hello", run, "operation.finished")
        assert [e.id for e in follower.events("hello", after_id=second)] == [third]


def test_a_store_can_be_handed_to_the_scheduler_thread(store: Store) -> None:
    hello(store)
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            run = store.begin_run("hello", "deploy")
            store.end_run(run, "ok")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=scheduler)
    thread.start()
    thread.join()
    assert errors == []
    assert [r.status for r in store.runs("hello")] == ["ok"]


# -- delete --------------------------------------------------------------------------------


def populate(store: Store, name: str) -> None:
    store.create_deployment(name, "bp.yaml", {}, {})
    store.save_instances(name, [InstanceRow(name, "web/0", "web")])
    run = store.begin_run(name, "deploy")
    op = store.begin_operation(run, name, "s", "web", "web/0", "Standard", "create", "h")
    store.finish_operation(
        op,
        status="ok",
        rc=0,
        outputs={},
        stdout_tail=[],
        stderr_tail=[],
        message="",
        done_step=("deploy", "s"),
    )
    store.add_event(name, run, "operation.finished")
    store.log_path(name, op).write_text("output\n")
    store.lock(name, "deploy").release()


KEY = {"deployments": "name"}
TABLES = ("deployments", "instances", "runs", "operations", "done_steps", "events")


def counts(root: Path, name: str) -> dict[str, int]:
    with raw(root) as conn:
        return {
            t: conn.execute(
                f"SELECT count(*) FROM {t} WHERE {KEY.get(t, 'deployment')} = ?",
                (name,),
            ).fetchone()[0]
            for t in TABLES
        }


def test_delete_deployment_removes_rows_and_folder(store: Store, root: Path) -> None:
    populate(store, "hello")
    populate(store, "other")
    sha = store.put_blob(b"shared artifact")
    last_event = store.events("hello")[-1].id
    assert all(counts(root, "hello").values())

    store.delete_deployment("hello")
    assert counts(root, "hello") == dict.fromkeys(TABLES, 0)
    assert not (root / "deployments" / "hello").exists()
    assert [p.name for p in (root / "deployments").iterdir()] == ["other"]
    assert all(counts(root, "other").values())
    assert (root / "deployments" / "other" / "logs").is_dir()
    assert store.blob(sha) == b"shared artifact"  # blobs are shared
    store.delete_deployment("hello")  # again: nothing left, no error

    # a namesake starts afresh; ids handed out before are never reused
    store.create_deployment("hello", "bp.yaml", {}, {})
    assert store.add_event("hello", None, "created") > last_event
    with store.lock("hello", "deploy"):
        pass


def test_delete_at_the_end_of_an_undeploy_under_its_lock(store: Store, root: Path) -> None:
    populate(store, "hello")
    with store.lock("hello", "undeploy") as held:
        store.delete_deployment("hello")
        assert held.held
    assert store.deployment("hello") is None
    with Store.open(root) as other, other.lock("hello", "deploy"):
        pass


def test_delete_refused_while_another_process_holds_the_lock(
    store: Store, root: Path, hold: Hold
) -> None:
    hello(store)
    proc, _, _ = hold()
    with pytest.raises(DeploymentBusy):
        store.delete_deployment("hello")
    assert store.deployment("hello") is not None
    kill9(proc)
    store.delete_deployment("hello")
    assert store.deployment("hello") is None


# -- lock ----------------------------------------------------------------------------------


def test_busy_message_names_action_time_and_pid() -> None:
    today = datetime.now().astimezone().replace(hour=10, minute=58, second=3, microsecond=0)
    busy = DeploymentBusy("hello", 1234, "deploy", today.isoformat())
    assert str(busy) == (
        "deployment 'hello' is busy: 'deploy' running since 10:58:03 (pid 1234); "
        "wait for it or stop it"
    )
    assert (busy.pid, busy.action, busy.since) == (1234, "deploy", today.isoformat())
    older = (today - timedelta(days=3)).isoformat()
    assert f"since {older[:10]} 10:58:03 (pid 1234)" in str(DeploymentBusy("h", 1234, "run", older))
    assert isinstance(busy, StateError)


def test_locking_twice_in_one_process_is_refused(store: Store, root: Path) -> None:
    hello(store)
    with store.lock("hello", "deploy"):
        with pytest.raises(DeploymentBusy) as info:
            store.lock("hello", "undeploy")
        assert (info.value.pid, info.value.action) == (os.getpid(), "deploy")
        # another store in the same process: a new open file description, so flock conflicts
        with Store.open(root) as second:
            with pytest.raises(DeploymentBusy) as info:
                second.lock("hello", "undeploy")
            assert (info.value.pid, info.value.action) == (os.getpid(), "deploy")
            assert f"(pid {os.getpid()})" in str(info.value)
    with Store.open(root) as second, second.lock("hello", "undeploy") as held:
        assert held.held
    assert not held.held


def test_the_lock_is_released_when_its_block_raises(store: Store) -> None:
    with pytest.raises(RuntimeError), store.lock("hello", "deploy"):
        raise RuntimeError("boom")
    store.lock("hello", "deploy").release()


def test_lock_refused_across_processes_until_the_holder_is_killed(
    store: Store, root: Path, hold: Hold
) -> None:
    hello(store)
    proc, _, _ = hold("undeploy")
    started = time.monotonic()
    with pytest.raises(DeploymentBusy) as info:
        store.lock("hello", "deploy")
    assert time.monotonic() - started < 0.3  # a live holder is reported at once
    assert (info.value.pid, info.value.action) == (proc.pid, "undeploy")
    assert "'undeploy' running since " in str(info.value)
    assert f"(pid {proc.pid})" in str(info.value)
    kill9(proc)  # its `sleep` child lives on and must not keep the lock
    with store.lock("hello", "deploy") as held:
        assert held.held


def test_a_holder_that_wrote_nothing_is_reported_without_details(
    store: Store, root: Path, spawn: Spawn
) -> None:
    store.lock("hello", "deploy").release()
    proc = spawn(
        """
        import sys, time
        from pathlib import Path
        from orch.state.lock import ByteLocks
        assert ByteLocks(Path(sys.argv[1])).try_lock("hello") is not None
        print("locked", flush=True)
        time.sleep(600)
        """,
        root / "state.db",
    )
    assert line(proc) == "locked"
    with pytest.raises(DeploymentBusy, match="another orch process holds its lock") as info:
        store.lock("hello", "deploy")
    assert info.value.pid is None
    kill9(proc)
    store.lock("hello", "deploy").release()


def test_a_dead_holder_and_a_probing_reader_do_not_refuse_the_lock(
    store: Store, root: Path, hold: Hold
) -> None:
    hello(store)
    proc, _, _ = hold()
    proc.send_signal(signal.SIGKILL)  # not reaped: its pid stays, as a zombie
    stat_file = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + 10
    while stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # its details are still in the holders table, and a reader (interrupt_stale) probes the lock
    with Store.open(root) as reader:
        stop = threading.Event()
        probing = threading.Thread(target=lambda: [reader.holder("hello") for _ in iter(
            stop.is_set, True)])  # fmt: skip
        probing.start()
        try:
            with store.lock("hello", "deploy") as held:
                assert held.held
        finally:
            stop.set()
            probing.join()


def test_deleting_lock_files_by_hand_lets_no_second_deploy_in(
    store: Store, root: Path, hold: Hold
) -> None:
    """The lock is a byte of state.db: nothing a user tidies away (locks/, *.lock) frees it."""
    hello(store)
    proc, _, _ = hold()
    for leftover in root.rglob("*.lock"):
        leftover.unlink()
    shutil.rmtree(root / "locks", ignore_errors=True)
    with pytest.raises(DeploymentBusy) as info:
        store.lock("hello", "deploy")
    assert info.value.pid == proc.pid
    kill9(proc)
    store.lock("hello", "deploy").release()


# -- crashes -------------------------------------------------------------------------------


WRITER = """
    import os, sys
    from orch.state import Store
    store = Store.open(sys.argv[1])
    with store.lock("hello", "deploy"):
        run = store.begin_run("hello", "deploy")
        i = 0
        while True:
            op = store.begin_operation(run, "hello", f"s{i}", "web", "web/0", "Standard",
                                       "create", "h")
            store.finish_operation(
                op, status="ok", rc=0, outputs={"i": i, "☃": "ü"}, stdout_tail=[f"line {i}"],
                stderr_tail=[], message="", done_step=("deploy", f"s{i}"),
                instance_updates={"web/0": {"attributes": {"count": i}}})
            store.add_event("hello", run, "operation.finished", data={"op": op})
            os.write(1, f"{op} {i}\\n".encode())  # one write: a line is whole or absent
            i += 1
"""


@pytest.mark.parametrize("finished_before_kill", [1, 57, 400])
def test_kill_9_mid_writes_loses_nothing_reported(
    root: Path, spawn: Spawn, finished_before_kill: int
) -> None:
    with Store.open(root) as store:
        hello(store, 1)
    proc = spawn(WRITER, root)
    reported = [line(proc) for _ in range(finished_before_kill)]
    reported += kill9(proc).split("\n")[:-1]  # whole lines printed before dying count too
    finished = {int(op): int(i) for op, i in (r.split() for r in reported if r)}
    assert len(finished) >= finished_before_kill

    with raw(root) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with Store.open(root, create=False) as store:
        ops = {o.id: o for o in store.operations("hello")}
        for op, i in finished.items():
            assert (ops[op].status, ops[op].outputs, ops[op].stdout_tail) == (
                "ok",
                {"i": i, "☃": "ü"},
                [f"line {i}"],
            )
        done = store.done_steps("hello", "deploy")
        assert {f"s{i}" for i in finished.values()} <= done
        assert store.instances("hello")[0].attributes["count"] >= max(finished.values())
        # at most the one operation under way when killed is left running; nothing else is
        running = [o for o in ops.values() if o.status == "running"]
        assert len(running) <= 1
        assert all(o.id > max(finished) for o in running)

        [run] = store.runs("hello")
        assert run.status == "running" and run.pid == proc.pid
        interrupted = store.interrupt_stale("hello")
        assert [o.id for o in interrupted] == [o.id for o in running]
        assert all(o.status == "interrupted" and o.ended for o in interrupted)
        assert [r.status for r in store.runs("hello")] == ["interrupted"]
        assert [o for o in store.operations("hello") if o.status == "running"] == []
        assert store.interrupt_stale("hello") == []
        with store.lock("hello", "deploy"):  # and the next deploy may start
            pass


def test_interrupt_stale_leaves_a_live_holder_alone(
    store: Store, root: Path, spawn: Spawn, hold: Hold
) -> None:
    hello(store)
    # a run whose process ended without closing it, while another process holds the lock
    gone = spawn(
        """
        import sys
        from orch.state import Store
        store = Store.open(sys.argv[1])
        run = store.begin_run("hello", "run", "sim")
        op = store.begin_operation(run, "hello", "s", "web", "web/1", "Standard", "start", "h")
        print(op, flush=True)
        """,
        root,
    )
    orphan_op = int(line(gone))
    gone.communicate()
    proc, run, op = hold()

    interrupted = store.interrupt_stale("hello")
    assert [o.id for o in interrupted] == [orphan_op]
    assert f"pid {gone.pid}" in interrupted[0].message
    statuses = {r.id: r.status for r in store.runs("hello")}
    assert statuses[run] == "running"
    assert sorted(statuses.values()) == ["interrupted", "running"]
    assert store.operation(op).status == "running"  # type: ignore[union-attr]

    kill9(proc)
    assert [o.id for o in store.interrupt_stale("hello")] == [op]
    assert store.runs("hello")[-1].status == "interrupted"


def test_interrupt_stale_when_the_lock_is_free_even_if_the_pid_lives(
    store: Store, root: Path
) -> None:
    hello(store)
    with Store.open(root) as other:
        run = other.begin_run("hello", "deploy")  # this process lives, but holds no lock
        op = other.begin_operation(run, "hello", "s", "web", "web/0", "Standard", "create", "h")
    assert [o.id for o in store.interrupt_stale("hello")] == [op]
    assert store.runs("hello")[0].status == "interrupted"


def test_interrupt_stale_under_our_own_lock_spares_our_own_run(store: Store, root: Path) -> None:
    hello(store)
    with Store.open(root) as earlier:
        old = earlier.begin_run("hello", "deploy")
    with store.lock("hello", "deploy"):
        mine = store.begin_run("hello", "deploy")
        assert store.interrupt_stale("hello") == []  # no operations, but the run is closed
        assert {r.id: r.status for r in store.runs("hello")} == {
            old: "interrupted",
            mine: "running",
        }


EVENTS = """
    import sys
    from orch.state import Store
    store = Store.open(sys.argv[1])
    name = sys.argv[2]
    store.create_deployment(name, "bp.yaml", {}, {})
    run = store.begin_run(name, "deploy")
    for i in range(300):
        store.add_event(name, run, "tick", data={"i": i})
    store.end_run(run, "ok")
    print("done", flush=True)
"""


def test_several_processes_share_a_fresh_state_dir(root: Path, spawn: Spawn) -> None:
    procs = [spawn(EVENTS, root, f"d{k}") for k in range(4)]
    for proc in procs:
        assert line(proc) == "done"
    with Store.open(root, create=False) as store:
        assert [d.name for d in store.deployments()] == ["d0", "d1", "d2", "d3"]
        ids = []
        for k in range(4):
            events = store.events(f"d{k}")
            assert [e.data["i"] for e in events] == list(range(300))
            ids += [e.id for e in events]
            assert [r.status for r in store.runs(f"d{k}")] == ["ok"]
        assert len(set(ids)) == 1200
