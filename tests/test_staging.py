"""Data stage-in and stage-out (``orch.nodes.StageIn``/``StageOut``) on the loopback sshd, as
its unprivileged user with a credential token: `orch deploy` end to end, files skipped by
sha256 on a second run, a large file streamed both ways in bounded memory, failures that name
the file, the host and the cause, orch's own machine as the host, and cancel mid-transfer."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orch.executors import staging
from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.staging import Includes, StagingExecutor, parse_sums
from orch.transport.base import HostKeyPolicy
from orch.transport.ssh import TransportPool
from sites.cli import Orch, authorized_keys_file
from sites.sshd import SshServer

MiB = 1024 * 1024

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    remove: {type: boolean, default: false}
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: loop}
    inputs:
      type: orch.nodes.StageIn
      properties:
        source: dataset
        remove_on_undeploy: {get_input: remove}
      requirements: [{host: login}]
    results:
      type: orch.nodes.StageOut
      properties:
        source: inputs/sub
        destination: fetched
        include: ["*.txt", "deep/**"]
      requirements: [{host: login}, {dependency: inputs}]
"""

DATA = {
    "a.txt": b"alpha\n",
    "with space.txt": b"beta\n",
    "sub/one.txt": b"one\n",
    "sub/skip.bin": b"not fetched back\n",
    "sub/deep/three.txt": b"three\n",
    "sub/deep/er/two.bin": bytes(range(256)) * 64,
}
FETCHED = ("one.txt", "deep/three.txt", "deep/er/two.bin")


# -- fixtures ---------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path (temporary transfer names included)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def remote(ssh_server: SshServer) -> Iterator[Path]:
    """A fresh folder of the site's unprivileged user (seen directly: the tests run as root)."""
    user = pwd.getpwnam(ssh_server.unprivileged_user)
    path = Path(user.pw_dir) / f"stage-{secrets.token_hex(4)}"
    path.mkdir()
    os.chown(path, user.pw_uid, user.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def root_owned() -> Iterator[Path]:
    """A folder the site's user may read but not write."""
    path = Path(tempfile.mkdtemp(prefix="orch-stage-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(orch: Orch, ssh_server: SshServer, remote: Path) -> Iterator[SshServer]:
    """sites.yaml naming the loopback sshd as 'loop' (its work_dir: ``remote``), with a
    credential token its unprivileged user accepts."""
    token = orch("credentials", "generate", "--comment", "orch staging test").stdout.strip()
    keys = authorized_keys_file(ssh_server, ssh_server.unprivileged_user)
    before = keys.read_text()
    keys.write_text(before + orch("credentials", "public-key", token).stdout)
    entry = {"host": "127.0.0.1", "port": ssh_server.port,
             "user": ssh_server.unprivileged_user, "credentials": token,
             "known_hosts": str(ssh_server.known_hosts), "scheduler": "none",
             "work_dir": str(remote)}
    orch.write("sites.yaml", f"sites:\n  loop: {json.dumps(entry)}\n")
    try:
        yield ssh_server
    finally:
        keys.write_text(before)


def login(server: SshServer) -> str:
    return f"{server.unprivileged_user}@127.0.0.1:{server.port}"


def deploy(orch: Orch, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    return orch("deploy", "bp.yaml", *args, check=check)


def attributes(orch: Orch, node: str) -> dict:
    data = json.loads(orch("status", "bp", "-f", "json").stdout)
    [instance] = [i for i in data["instances"] if i["node"] == node]
    return instance["attributes"]


def counts(orch: Orch, node: str) -> tuple[int, int]:
    values = attributes(orch, node)
    return values["files"], values["skipped"]


# -- end to end -------------------------------------------------------------------------------


def test_deploy_stages_a_folder_in_and_results_out(orch: Orch, site: SshServer,
                                                   remote: Path) -> None:
    orch.write("bp.yaml", BLUEPRINT)
    write_tree(orch.root / "dataset", DATA)
    (orch.root / "dataset" / "a.txt").chmod(0o640)
    deploy(orch, "-i", "remove=true")

    staged = remote / "bp" / "inputs"
    assert tree(staged) == DATA  # nothing else: no temporary names left behind
    user = pwd.getpwnam(site.unprivileged_user)
    assert (staged / "sub/deep/er/two.bin").stat().st_uid == user.pw_uid
    assert (staged / "a.txt").stat().st_mode & 0o777 == 0o640
    assert tree(orch.root / "fetched") == {name: DATA[f"sub/{name}"] for name in FETCHED}

    assert attributes(orch, "inputs") == {
        "state": "started", "path": str(staged), "files": len(DATA), "skipped": 0,
        "bytes": sum(map(len, DATA.values())),
    }
    results = attributes(orch, "results")
    assert results["path"] == str(orch.root / "fetched")
    assert (results["files"], results["skipped"]) == (3, 0)

    logs = orch("logs", "bp").stdout
    assert "uploaded with space.txt (5 B)" in logs
    assert "uploaded sub/deep/er/two.bin (16.0 KiB)" in logs
    assert f"staged in 6 file(s), 16.0 KiB, at {login(site)}:{staged}; 0 skipped" in logs
    assert "downloaded deep/er/two.bin (16.0 KiB)" in logs
    assert "staged out 3 file(s)" in logs

    orch("undeploy", "bp")
    assert not staged.exists()  # remove_on_undeploy
    assert f"removed {login(site)}:{staged}" in orch("logs", "bp").stdout


def test_a_second_run_moves_only_what_changed(orch: Orch, site: SshServer, remote: Path) -> None:
    orch.write("bp.yaml", BLUEPRINT)
    write_tree(orch.root / "dataset", DATA)
    deploy(orch)
    orch("undeploy", "bp")  # the data stays on the site (remove_on_undeploy: false)
    assert "(remove_on_undeploy is false)" in orch("logs", "bp").stdout

    deploy(orch)
    assert counts(orch, "inputs") == (0, len(DATA))
    assert counts(orch, "results") == (0, len(FETCHED))
    assert attributes(orch, "inputs")["bytes"] == 0
    logs = orch("logs", "bp").stdout
    assert "skipped with space.txt (same sha256)" in logs
    assert "skipped deep/er/two.bin (same sha256)" in logs

    (orch.root / "dataset" / "sub" / "one.txt").write_bytes(b"changed\n")
    orch("undeploy", "bp")
    deploy(orch)
    assert counts(orch, "inputs") == (1, len(DATA) - 1)
    assert counts(orch, "results") == (1, len(FETCHED) - 1)
    assert (remote / "bp" / "inputs" / "sub" / "one.txt").read_bytes() == b"changed\n"
    assert (orch.root / "fetched" / "one.txt").read_bytes() == b"changed\n"


FAILING = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    locked: {type: string}
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: loop}
    inputs:
      type: orch.nodes.StageIn
      properties:
        source: dataset
        destination: {concat: [{get_input: locked}, /data]}
      requirements: [{host: login}]
    results:
      type: orch.nodes.StageOut
      properties:
        source: missing/results
        destination: fetched
      requirements: [{host: login}]
    absent:
      type: orch.nodes.StageIn
      properties: {source: not-there}
      requirements: [{host: login}]
"""


def test_failures_name_the_path_the_host_and_the_cause(
    orch: Orch, site: SshServer, remote: Path, root_owned: Path
) -> None:
    orch.write("bp.yaml", FAILING)
    write_tree(orch.root / "dataset", DATA)
    proc = deploy(orch, "-i", f"locked={root_owned}", check=4)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert (f"cannot create the destination {root_owned}/data on {login(site)}: "
            f"mkdir: cannot create directory '{root_owned}/data': Permission denied") in output
    assert (f"cannot read the source {remote}/bp/missing/results on {login(site)}: "
            f"ls: cannot access '{remote}/bp/missing/results': No such file or directory"
            ) in output
    assert (f"the source {orch.root}/not-there cannot be read on orch's machine: "
            "No such file or directory") in output
    assert "retrying" not in output
    assert not (orch.root / "fetched").exists()


# -- the executor, called directly ------------------------------------------------------------


class Call:
    """Runs the stage executor on one host, collecting its log lines."""

    def __init__(self, pool: TransportPool, host: Host, base_dir: Path):
        self.pool = pool
        self.host = host
        self.base_dir = base_dir
        self.cancel = threading.Event()
        self.lines: list[str] = []
        self.on_line: Callable[[str], None] = lambda line: None

    def log(self, stream: str, line: str) -> None:
        self.lines.append(line)
        self.on_line(line)

    def __call__(self, direction: str, operation: str = "start", inputs: dict | None = None,
                 **properties: object) -> OperationResult:
        task = Task(
            deployment="dep", node="data", instance="data/0", interface="Standard",
            operation=operation, implementation=Artifact("stage", Path("stage")),
            inputs={"direction": direction, **(inputs or {})}, host=self.host,
            properties=properties, base_dir=str(self.base_dir),
        )  # fmt: skip
        context = RunContext(transport=self.pool.get, cancel=self.cancel, log=self.log)
        return StagingExecutor().run(task, context)


@pytest.fixture
def over_ssh(ssh_pool: TransportPool, ssh_user_host: Host, tmp_path: Path) -> Call:
    return Call(ssh_pool, ssh_user_host, tmp_path)


def test_a_large_file_streams_both_ways_in_bounded_memory(
    over_ssh: Call, remote: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big" / "random.bin"
    big.parent.mkdir()
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(MiB))
    tracemalloc.start()
    try:
        up = over_ssh("in", source="big", destination=str(remote / "big"))
        up_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        down = over_ssh("out", source=str(remote / "big"), destination="back")
        down_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert up.ok, up.message
    assert down.ok, down.message
    assert up.outputs["bytes"] == down.outputs["bytes"] == str(64 * MiB)
    assert sha256(remote / "big" / "random.bin") == sha256(big)
    assert sha256(tmp_path / "back" / "random.bin") == sha256(big)
    assert up_peak < 16 * MiB, f"upload peak {up_peak / MiB:.1f} MiB"
    assert down_peak < 16 * MiB, f"download peak {down_peak / MiB:.1f} MiB"


def test_odd_names_and_a_file_source(over_ssh: Call, remote: Path, tmp_path: Path) -> None:
    odd = {"new\nline.txt": b"1", "back\\slash.txt": b"2", "-dash.txt": b"3", "é/ü.txt": b"4"}
    write_tree(tmp_path / "odd", odd)
    result = over_ssh("in", source="odd", destination=str(remote / "odd"))
    assert result.ok, result.message
    assert tree(remote / "odd") == odd
    assert "uploaded new\\nline.txt (1 B)" in over_ssh.lines  # one log line per file
    again = over_ssh("in", source="odd", destination=str(remote / "odd"))
    assert again.outputs["skipped"] == "4", over_ssh.lines

    single = over_ssh("in", source="odd/-dash.txt", destination=str(remote / "one"))
    assert single.outputs["path"] == f"{remote}/one/-dash.txt"
    back = over_ssh("out", source=f"{remote}/one/-dash.txt", destination="single")
    assert back.outputs["path"] == str(tmp_path / "single" / "-dash.txt")
    assert (tmp_path / "single" / "-dash.txt").read_bytes() == b"3"


def test_an_unwritable_file_is_named_and_nothing_half_done_remains(
    over_ssh: Call, ssh_user_host: Host, remote: Path, tmp_path: Path
) -> None:
    write_tree(tmp_path / "data", {"a.txt": b"a", "locked/b.txt": b"b"})
    (remote / "dest" / "locked").mkdir(parents=True)  # root's, 0755: orchtest cannot write
    shutil.chown(remote / "dest", pwd.getpwnam(ssh_user_host.user or "").pw_uid)
    result = over_ssh("in", source="data", destination=str(remote / "dest"))
    assert result.status == "failed"
    assert result.message == (
        f"cannot upload {tmp_path}/data/locked/b.txt to {ssh_user_host.describe()}:"
        f"{remote}/dest/locked/b.txt: Permission denied"
    )
    assert tree(remote / "dest") == {}  # a.txt was sent, but not put in place unverified


def test_cancel_between_chunks(over_ssh: Call, remote: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "PROGRESS_SECONDS", 0.0)  # a progress line after each chunk
    write_tree(tmp_path / "data", {"big.bin": os.urandom(8 * MiB)})
    write_tree(remote / "out", {"big.bin": os.urandom(8 * MiB)})
    over_ssh.on_line = lambda line: over_ssh.cancel.set() if " of " in line else None

    up = over_ssh("in", source="data", destination=str(remote / "in"))
    assert (up.status, up.message) == ("cancelled", "cancelled")
    assert tree(remote / "in") == {}
    over_ssh.cancel.clear()
    down = over_ssh("out", source=str(remote / "out"), destination="back")
    assert down.status == "cancelled"
    assert tree(tmp_path / "back") == {}


def test_orchs_own_machine_as_the_host(tmp_path: Path) -> None:
    pool = TransportPool(HostKeyPolicy())  # orch's own machine: never connects
    call = Call(pool, Host("localhost"), tmp_path)
    write_tree(tmp_path / "data", DATA)
    first = call("in", source="data", destination=str(tmp_path / "site"))
    assert first.ok, first.message
    assert tree(tmp_path / "site") == DATA
    assert call("in", source="data", destination=str(tmp_path / "site")).outputs == {
        "path": str(tmp_path / "site"), "files": "0", "skipped": str(len(DATA)), "bytes": "0",
    }
    out = call("out", source=str(tmp_path / "site"), destination="back", include=["sub/*.bin"])
    assert out.ok, out.message
    assert tree(tmp_path / "back") == {"sub/skip.bin": DATA["sub/skip.bin"]}

    home = call("in", "delete", {"path": os.path.expanduser("~")}, remove_on_undeploy=True)
    assert home.status == "failed" and "refusing to remove" in home.message
    gone = call("in", "delete", {"path": str(tmp_path / "site")}, remove_on_undeploy=True)
    assert gone.ok and not (tmp_path / "site").exists()


# -- names ------------------------------------------------------------------------------------


def test_include_patterns() -> None:
    includes = Includes(["*.txt", "deep/**", "data/[!x]?.nc"])
    assert includes("a.txt") and includes("x/y/a.txt")
    assert includes("deep/a.bin") and includes("deep/er/b.bin")
    assert includes("data/ab.nc") and not includes("data/xb.nc")
    assert not includes("x/deep/a.bin") and not includes("a.bin")
    assert Includes(None)("anything/at/all")
    assert includes.find_filter() == (
        r"\( -name '*.txt' -o -path './deep/*' -o -path './data/[!x]?.nc' \)"
    )


def test_sha256sum_output_with_escaped_names() -> None:
    digest = "e" * 64
    text = f"{digest}  ./plain name\n\\{digest}  ./new\\nline\\\\x\n{digest} *./binary\n"
    assert parse_sums(text) == {"plain name": digest, "new\nline\\x": digest, "binary": digest}
