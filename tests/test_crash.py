"""orch killed with ``kill -9`` and state files damaged or deleted under it, as happens on
laptops and login nodes: the real CLI, real scripts here and over SSH to the loopback sshd, a
real SQLite database. Nothing deployed is forgotten and no operation runs twice at once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sites.cli import Orch, host_template, wait_until

CHAIN = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-types:1.0.0]
topology_template:
  node_templates:
{host}
    first:
      type: {kind}
{requirement}
      interfaces:
        Standard:
          create: step.sh
    slow:
      type: {kind}
      requirements:
        - dependency: first
{host_requirement}
      interfaces:
        Standard:
          create: step.sh
"""
STEP = """
#!/bin/sh
# each run appends 'start' and 'end' with the time, and the slow one waits for a 'go' file
log={log}/$NODE.log
echo "start $$ $(date +%s.%N)" >> "$log"
if [ "$NODE" = slow ]; then
  while [ ! -f {log}/go ]; do sleep 0.05; done
fi
echo "end $$ $(date +%s.%N)" >> "$log"
"""


def chain(orch: Orch, log: Path, ssh_server=None) -> Path:
    kind = "tosca.nodes.Root"
    if ssh_server is None:
        host = requirement = host_requirement = ""
    else:
        kind = "tosca.nodes.SoftwareComponent"
        host = host_template(ssh_server).rstrip("\n")
        requirement = "      requirements:\n        - host: site"
        host_requirement = "        - host: site"
    orch.write("c/step.sh", STEP.format(log=log)).chmod(0o755)
    text = CHAIN.format(host=host, requirement=requirement, host_requirement=host_requirement,
                        kind=kind)  # fmt: skip
    return orch.write("c/blueprint.yaml", "\n".join(x for x in text.splitlines() if x.strip()))


def events(log: Path, node: str) -> list[tuple[str, int, float]]:
    path = log / f"{node}.log"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(kind, int(pid), float(when)) for kind, pid, when in rows]


def kill_mid_slow(orch: Orch, blueprint: Path, log: Path, *args: str) -> int:
    """Deploy, and kill -9 orch while the slow operation runs; returns the orphan's pid."""
    first = orch.start("deploy", str(blueprint), "-n", "k", *args)
    wait_until(lambda: len(events(log, "slow")) == 1, what="the slow operation to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    return events(log, "slow")[0][1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_never_overlapping(runs: list[tuple[str, int, float]]) -> None:
    kinds = [kind for kind, _, _ in runs]
    assert kinds == ["start", "end"] * (len(kinds) // 2), f"overlapping runs: {runs}"
    times = [when for _, _, when in runs]
    assert times == sorted(times)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "ssh"])
def test_a_resume_waits_for_what_the_killed_orch_left_running(
    orch: Orch, tmp_path: Path, remote: bool, request
):
    ssh_server = request.getfixturevalue("ssh_server") if remote else None
    log = Path(tempfile.mkdtemp(prefix="orch-crash-"))  # the remote user writes it too
    log.chmod(0o777)
    known = ["--known-hosts", str(ssh_server.known_hosts)] if remote else []
    try:
        blueprint = chain(orch, log, ssh_server)
        orphan = kill_mid_slow(orch, blueprint, log, *known)
        assert alive(orphan)
        # after the crash, status and list say so (not 'deploying')
        status = orch("status", "k").stdout
        assert "interrupted (orch pid" in status and "is gone)" in status
        assert "interrupted (orch pid" in orch("list").stdout
        resumed = orch.start("deploy", str(blueprint), "-n", "k", *known)
        time.sleep(2.0)
        assert resumed.poll() is None  # it waits...
        assert len(events(log, "slow")) == 1  # ...and starts no second copy beside the first
        (log / "go").touch()
        _, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
        assert "waiting for slow/0 Standard.create" in err
        runs = events(log, "slow")
        assert [k for k, _, _ in runs] == ["start", "end", "start", "end"]
        assert_never_overlapping(runs)
        assert runs[0][1] == orphan and runs[2][1] != orphan
        assert [k for k, _, _ in events(log, "first")] == ["start", "end"]  # done: not again
        assert "deployed" in orch("status", "k").stdout
    finally:
        subprocess.run(["rm", "-rf", str(log)], check=False)


def test_a_resume_can_stop_what_the_killed_orch_left_running(orch: Orch, tmp_path: Path):
    log = tmp_path / "log"
    log.mkdir()
    blueprint = chain(orch, log)
    orphan = kill_mid_slow(orch, blueprint, log)
    resumed = orch.start("deploy", str(blueprint), "-n", "k", "--survivors", "stop")
    wait_until(lambda: len(events(log, "slow")) == 2, what="the slow operation to run again")
    assert not alive(orphan)
    (log / "go").touch()
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert "process(es) of slow/0 Standard.create that the interrupted run left" in err, err
    kinds = [k for k, _, _ in events(log, "slow")]
    assert kinds == ["start", "start", "end"]  # the orphan never ended; one run at a time


def test_lost_state_is_noticed_and_nothing_is_redeployed(orch: Orch, tmp_path: Path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "go").touch()
    blueprint = chain(orch, log)
    orch("deploy", str(blueprint), "-n", "k")
    db = orch.root / ".orch" / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"")  # truncated to nothing
    for command in (("deploy", str(blueprint), "-n", "k"), ("undeploy", "k"),
                    ("run", "x", "-n", "k")):  # fmt: skip
        proc = orch(*command, check=3)
        assert "has no record of deployment(s) 'k'" in proc.stderr, proc.stderr
        assert "restore state.db" in proc.stderr
    assert [k for k, _, _ in events(log, "first")] == ["start", "end"]  # nothing ran again
    listed = orch("list", check=None)
    assert "'k'" in listed.stderr and "no record" in listed.stderr
    # deleting the folder of the lost deployment is the way to forget it
    (orch.root / ".orch" / "deployments" / "k").rename(tmp_path / "forgotten")
    orch("deploy", str(blueprint), "-n", "k")


def test_a_wal_deleted_while_orch_runs_is_saved(orch: Orch, tmp_path: Path):
    log = tmp_path / "log"
    log.mkdir()
    blueprint = chain(orch, log)
    proc = orch.start("deploy", str(blueprint), "-n", "k")
    wait_until(lambda: len(events(log, "slow")) == 1, what="the slow operation to start")
    wal = orch.root / ".orch" / "state.db-wal"
    wal.unlink()
    (log / "go").touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "WAL file" in err and "was deleted while orch was using it" in err
    # everything recorded after the deletion is in the database
    with sqlite3.connect(orch.root / ".orch" / "state.db") as conn:
        assert conn.execute("SELECT status FROM deployments").fetchall() == [("deployed",)]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "deployed" in orch("status", "k").stdout
    assert orch("deploy", str(blueprint), "-n", "k").stderr.count("] ok ") == 0


def test_a_damaged_database_is_a_clear_error_for_every_command(orch: Orch, tmp_path: Path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "go").touch()
    blueprint = chain(orch, log)
    orch("deploy", str(blueprint), "-n", "k")
    db = orch.root / ".orch" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    for offset in range(page * 2, min(len(data), page * 4)):
        data[offset] = 0x5A  # garbage over the pages of the first tables
    db.write_bytes(bytes(data))
    for command in (("status", "k"), ("list",), ("outputs", "k"), ("logs", "k"),
                    ("deploy", str(blueprint), "-n", "k"), ("undeploy", "k")):  # fmt: skip
        proc = orch(*command, check=None)
        assert proc.returncode == 3, (command, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert "damaged" in proc.stderr or "malformed" in proc.stderr, proc.stderr


RELATIONSHIP = """
tosca_definitions_version: tosca_simple_yaml_1_3
relationship_types:
  demo.Link:
    derived_from: tosca.relationships.DependsOn
    attributes:
      secret_port: {type: integer}
topology_template:
  relationship_templates:
    wire:
      type: demo.Link
      interfaces:
        Configure:
          add_target:
            implementation: pick.sh
            outputs:
              PORT: [SELF, secret_port]
  node_templates:
    server:
      type: tosca.nodes.Root
    client:
      type: tosca.nodes.Root
      requirements:
        - dependency: {node: server, relationship: wire}
    reader:
      type: tosca.nodes.Root
      requirements:
        - dependency: client
      interfaces:
        Standard:
          create:
            implementation: show.sh
            inputs: {PORT: {get_attribute: [wire, secret_port]}}
  workflows:
    show:
      steps:
        again:
          target: reader
          activities:
            - call_operation: Standard.create
"""


def test_relationship_attributes_are_stored_for_later_runs(orch: Orch, tmp_path: Path):
    orch.write("r/blueprint.yaml", RELATIONSHIP)
    orch.write("r/pick.sh", '#!/bin/sh\necho "PORT=4711" >> "$ORCH_OUTPUTS"\n').chmod(0o755)
    seen = tmp_path / "seen.txt"
    orch.write("r/show.sh", f'#!/bin/sh\necho "port $PORT" >> {seen}\n').chmod(0o755)
    proc = orch("deploy", "r/blueprint.yaml", "-n", "rel", check=None)
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text() == "port 4711\n"
    # another process: the attribute comes from the state, not from memory
    orch("run", "show", "-n", "rel")
    assert seen.read_text() == "port 4711\nport 4711\n"
    with sqlite3.connect(orch.root / ".orch" / "state.db") as conn:
        (attributes,) = conn.execute("SELECT attributes FROM links").fetchone()
    assert json.loads(attributes) == {"secret_port": 4711}


def test_a_deploy_that_cannot_go_on_is_never_left_deploying(orch: Orch, tmp_path: Path):
    """The state folder breaks under a running deploy (its logs folder replaced by a file):
    the deploy stops with the reason, exit 3, and the deployment is marked failed."""
    log = tmp_path / "log"
    log.mkdir()
    blueprint = chain(orch, log)
    text = blueprint.read_text().rstrip("\n") + (
        "\n    last:\n      type: tosca.nodes.Root\n      requirements:\n        - dependency: slow"
        "\n      interfaces:\n        Standard:\n          create: step.sh\n"
    )
    blueprint.write_text(text)
    proc = orch.start("deploy", str(blueprint), "-n", "k")
    wait_until(lambda: len(events(log, "slow")) == 1, what="the slow operation to start")
    logs = orch.root / ".orch" / "deployments" / "k" / "logs"
    logs.rename(tmp_path / "moved-logs")
    logs.write_text("not a folder")
    (log / "go").touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "cannot create" in err and "Traceback" not in err
    status = orch("status", "k").stdout
    assert status.splitlines()[0] == "deployment k: failed", status
