"""Each operation's folder of records (``orch.engine.artifacts``), kept by the engine whatever
the executor: stdout, stderr, rc, status and task.json, private, secrets masked, the small files
replaced whole."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orch import deployments
from orch.engine import artifacts
from orch.engine.runner import EngineOptions
from orch.executors.masking import MASK
from orch.state import Store

SECRET = "hunter2-Very-Secret-77"
BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    password: {type: string, metadata: {sensitive: true}}
    greeting: {type: string, default: hello}
  node_templates:
    good:
      type: tosca.nodes.Root
      interfaces:
        Standard:
          create:
            implementation: good.sh
            inputs:
              PASSWORD: {get_input: password}
              GREETING: {get_input: greeting}
    bad:
      type: tosca.nodes.Root
      requirements: [{dependency: good}]
      interfaces:
        Standard:
          create: bad.sh
"""
GOOD = """\
#!/bin/sh
echo "$GREETING with $PASSWORD"
echo "a warning" >&2
"""
BAD = """\
#!/bin/sh
echo "about to fail"
echo "broken: $NODE" >&2
exit 3
"""


def deploy(tmp_path: Path) -> tuple[Store, deployments.Outcome]:
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    for name, text in (("good.sh", GOOD), ("bad.sh", BAD)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    prepared = deployments.prepare(str(tmp_path / "bp.yaml"), [f"password={SECRET}"])
    store = Store.open(tmp_path / "state")
    return store, deployments.deploy(store, prepared, "arts", EngineOptions(workers=1))


def folders(store: Store) -> dict[str, Path]:
    """Each node's (latest) operation folder."""
    return {op.node: store.artifacts_dir("arts", op.id) for op in store.operations("arts")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_operation_keeps_its_records(tmp_path: Path) -> None:
    store, outcome = deploy(tmp_path)
    assert outcome.status == "failed"
    good = folders(store)["good"]
    assert mode(good) == 0o700 and mode(good.parent) == 0o700
    for name in ("stdout", "stderr", "rc", "status", "task.json"):
        assert mode(good / name) == 0o600, name
    assert (good / "stdout").read_text() == f"hello with {MASK}\n"
    assert (good / "stderr").read_text() == "a warning\n"
    assert (good / "rc").read_text() == "0"
    assert (good / "status").read_text() == "ok"
    task = json.loads((good / "task.json").read_text())
    assert task["node"] == "good" and task["instance"] == "good/0"
    assert (task["interface"], task["operation"]) == ("Standard", "create")
    assert task["implementation"] == "good.sh" and task["executor"] == "script"
    assert task["host"] == "localhost" and task["attempt"] == 1
    assert task["status"] == "ok" and task["rc"] == 0
    assert task["started"] <= task["ended"]
    assert task["inputs"] == {"PASSWORD": MASK, "GREETING": "hello"}
    assert "secret_values" not in task
    assert not [p for p in good.iterdir() if p.name.endswith(".tmp")]


def test_the_secret_never_reaches_the_records(tmp_path: Path) -> None:
    store, _ = deploy(tmp_path)
    runs = store.artifacts_dir("arts", 1).parent
    kept = [p for p in runs.rglob("*") if p.is_file()]
    assert kept
    for path in kept:
        assert SECRET.encode() not in path.read_bytes(), path
    assert MASK in (folders(store)["good"] / "stdout").read_text()


def test_a_failed_operation_has_its_status_and_exit_code(tmp_path: Path) -> None:
    store, _ = deploy(tmp_path)
    bad = folders(store)["bad"]
    assert (bad / "status").read_text() == "failed"
    assert (bad / "rc").read_text() == "3"
    assert (bad / "stdout").read_text() == "about to fail\n"
    assert (bad / "stderr").read_text() == "broken: bad\n"
    task = json.loads((bad / "task.json").read_text())
    assert task["status"] == "failed" and task["rc"] == 3 and task["message"]


def test_the_combined_log_is_still_written(tmp_path: Path) -> None:
    store, _ = deploy(tmp_path)
    op = next(op for op in store.operations("arts") if op.node == "bad")
    log = store.log_path("arts", op.id).read_text()
    assert "out about to fail\n" in log and "err broken: bad\n" in log


def test_orch_logs_shows_where_the_records_are(tmp_path: Path) -> None:
    store, _ = deploy(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "orch", "logs", "arts", "--artifacts", "--node", "bad",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    bad = folders(store)["bad"]
    assert proc.stdout.splitlines() == [f"{bad.name} bad/0 Standard.create failed {bad}"]


# ---------------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "status"
    artifacts.atomic_write(target, "ok")
    assert target.read_text() == "ok" and mode(target) == 0o600
    artifacts.atomic_write(target, "failed")
    assert target.read_text() == "failed"
    assert [p.name for p in tmp_path.iterdir()] == ["status"]


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "status"
    artifacts.atomic_write(target, "running")

    def killed(_fd: int) -> None:  # as if the process died between the write and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        artifacts.atomic_write(target, "interrupted-and-much-longer")
    assert target.read_text() == "running"
    assert [p.name for p in tmp_path.iterdir()] == ["status"]


def test_a_write_that_fails_leaves_no_file_at_all_when_there_was_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OSError):
        artifacts.atomic_write(tmp_path / "rc", "0")
    assert list(tmp_path.iterdir()) == []


def test_task_records_mask_even_short_secrets_whole() -> None:
    inputs = {"pin": "abc", "port": 2222, "motd": "pin is abc!", "user": "me", "n": [2222]}
    assert artifacts.scrubbed(inputs, ["abc", 2222]) == {
        "pin": MASK, "port": MASK, "motd": MASK, "user": "me", "n": [MASK],
    }  # fmt: skip
    assert artifacts.scrubbed(f"with {SECRET} inside", [SECRET]) == f"with {MASK} inside"


def test_a_folder_is_made_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = artifacts.make_folder(tmp_path / "runs" / "7")
        with artifacts.Streams(folder) as streams:
            streams.write("stdout", "one")
            streams.write("stderr", "two")
    finally:
        os.umask(old)
    assert mode(folder) == 0o700 and mode(folder.parent) == 0o700
    assert (folder / "stdout").read_text() == "one\n" and mode(folder / "stdout") == 0o600
    assert (folder / "stderr").read_text() == "two\n" and mode(folder / "stderr") == 0o600

