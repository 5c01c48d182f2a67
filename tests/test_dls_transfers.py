"""The ``dls`` executor: eFlows4HPC Data Logistics Service node types carried out by orch's own
transfers (``orch.transfers``), against real servers on loopback.

The site is the real sshd of ``sites.fixtures`` (as root: files land on this machine's disk,
where the tests read them). The sources are real servers the tests start themselves: Python's
``http.server`` in a thread (plain HTTP), WsgiDAV on cheroot with basic auth (WebDAV), ``git
daemon`` on a bare repository (git), the same sshd as a second site (SSH2SSH). A B2SHARE server
cannot be installed here: a small stand-in answers B2SHARE's documented REST API
(``GET /api/records/<id>`` with ``files`` entries: ``key``, ``size``, ``checksum`` ``md5:...``,
``links.self``) from the same ``http.server``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.dls import (
    NODE_TYPE_ENV,
    DlsExecutor,
    build_conf,
    unsupported_reason,
)
from orch.transport.ssh import TransportPool
from sites.web import Files, b2share_record, free_port, serve_files, serve_webdav

T = "dls.ansible.nodes."
PASSWORD = "dav-Secret-4711"
TOKEN = "b2-token-0123456789abcdef"


# -- servers of the tests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[str, Files]]:
    with serve_files() as served:
        yield served


def closed_port() -> int:
    return free_port()


# -- running the executor ---------------------------------------------------------------------


class Call:
    """Runs the dls executor on the test site, collecting its log."""

    def __init__(self, pool: TransportPool, host: Host, resolve: Any = None):
        self.pool = pool
        self.host = host
        self.cancel = threading.Event()
        self.lines: list[str] = []
        self.executor = DlsExecutor(resolve)

    def log(self, stream: str, line: str) -> None:
        self.lines.append(f"{stream}: {line}")

    def __call__(self, node_type: str, inputs: dict[str, Any], properties: dict[str, Any],
                 *, interface: str = "Runnable", operation: str = "submit",
                 secrets: tuple[str, ...] = (), timeout: float | None = None
                 ) -> OperationResult:
        task = Task(
            deployment="dep", node="data", instance="data/0", interface=interface,
            operation=operation, implementation=Artifact("dls", Path("dls")),
            inputs=inputs, environment={NODE_TYPE_ENV: node_type}, host=self.host,
            properties=properties, secret_values=secrets, timeout=timeout,
        )  # fmt: skip
        context = RunContext(transport=self.pool.get, cancel=self.cancel, log=self.log)
        return self.executor.run(task, context)


@pytest.fixture
def call(ssh_pool: TransportPool, ssh_host: Host) -> Call:
    return Call(ssh_pool, ssh_host)


@pytest.fixture
def site_dir() -> Iterator[Path]:
    """A folder on the site (this machine: the sshd logs in as root here)."""
    path = Path(tempfile.mkdtemp(prefix="orch-dls-site-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def http_inputs(url: str, target: str, force: bool = True, **more: Any) -> dict[str, Any]:
    """Runnable.submit's inputs of HTTP2SSH as types.yml names them."""
    return {"submit_tasks": "submit_dag_http2ssh_data.yaml", "dag_id": "plainhttp2ssh",
            "url": url, "url_input": "", "force": force, "target_path": target,
            "target_path_input": None, "host": "", "host_from_env": "site", "port": 22,
            "login": "", "vault_id": "", "login_input": "", "vault_id_input": "", **more}


def no_part_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# -- the conf, as the playbooks compute it ------------------------------------------------------


def test_conf_follows_the_playbooks() -> None:
    conf = build_conf({
        "oid": "prop-oid", "oid_input": "input-oid", "target_path": "/p", "target_path_input": "",
        "host": "h", "host_from_env": "env-host", "login": "me", "login_input": None,
        "vault_id": "v", "vault_id_input": "v2", "conf": json.dumps({"extra": "1", "oid": "x"}),
    }, "submit_dag_stagein_data.yaml")  # fmt: skip
    assert conf == {"extra": "1", "oid": "input-oid", "target": "/p", "host": "env-host",
                    "login": "me", "vault_id": "v2"}
    conf = build_conf({"force": "true", "oid": "o", "target_path": "t", "host": "h"},
                      "submit_dag_webdav_stagein_data.yaml")
    assert conf["force"] is True
    conf = build_conf({"source_host": "a", "source_path": "/s", "target_host_from_env": "b",
                       "target_path": "/t", "target_login": "u", "source_login": "",
                       "target_vault_id": "vid", "source_vault_id": ""},
                      "submit_dag_ssh2ssh_data.yaml")
    assert conf["source_login"] == "u" and conf["source_vault_id"] == "vid"
    assert conf["target_host"] == "b"
    conf = build_conf({"git_url": "http://g", "git_repo_input": "r.git", "conf": {"k": "v"}},
                      "submit_dag_git2ssh_data.yaml")
    assert conf["gitlab_url"] == "http://g" and conf["gitlab_repo"] == "r.git"
    assert conf["k"] == "v"


def test_unsupported_types_and_dags_are_named() -> None:
    assert unsupported_reason([T + "HTTP2SSH", T + "DLSDAGRun"], "plainhttp2ssh") is None
    assert unsupported_reason([T + "DLSDAGStageInData"], "taskflow_example") is None
    why = unsupported_reason([T + "DLSDAGModelUpload", T + "DLSDAGRun"], "mlflow_upload")
    assert why and "DLSDAGModelUpload" in why and "mlflow_upload" in why
    why = unsupported_reason([T + "DLSDAGRun"], "my_own_dag")
    assert why and "my_own_dag" in why and "DLSDAGRun" in why
    why = unsupported_reason([T + "DLSDAGImageTransfer"], "transfer_image")
    assert why and "image" in why


def test_refused_at_run_names_type_and_dag(call: Call) -> None:
    result = call(T + "DLSDAGRun", {"submit_tasks": "submit_dag_generic.yaml"},
                  {"dag_id": "some_dag"})
    assert result.status == "failed"
    assert "DLSDAGRun" in result.message and "some_dag" in result.message


def test_monitor_and_standard_mode_off_do_nothing(call: Call) -> None:
    result = call(T + "HTTP2SSH", {}, {"dag_id": "plainhttp2ssh"}, operation="run")
    assert result.ok and result.outputs["TOSCA_JOB_STATUS"] == "COMPLETED"
    result = call(T + "HTTP2SSH", {"run_in_standard_mode": False},
                  {"dag_id": "plainhttp2ssh"}, interface="Standard", operation="start")
    assert result.ok and not result.outputs


# -- HTTP -------------------------------------------------------------------------------------


def test_http_lands_the_bytes_then_skips_then_forces(call: Call, web: tuple[str, Files],
                                                     site_dir: Path) -> None:
    base, files = web
    data = os.urandom(3 * 1024 * 1024 + 17)
    files.routes["/data/blob.bin"] = (data, {"Last-Modified": "Wed, 01 Jan 2025 10:00:00 GMT"})
    target = str(site_dir / "in") + "/"
    result = call(T + "HTTP2SSH", http_inputs(f"{base}/data/blob.bin", target, force=False),
                  {"dag_id": "plainhttp2ssh"})
    assert result.ok, result.message
    landed = site_dir / "in" / "blob.bin"
    assert landed.read_bytes() == data
    assert result.outputs["target_path"] == str(landed)
    assert result.outputs["execution_url"].endswith(str(landed))
    assert int(landed.stat().st_mtime) == 1735725600
    assert not no_part_files(site_dir)
    again = call(T + "HTTP2SSH", http_inputs(f"{base}/data/blob.bin", target, force=False),
                 {"dag_id": "plainhttp2ssh"})
    assert again.ok and again.outputs["skipped"] == "1" and again.outputs["files"] == "0"
    forced = call(T + "HTTP2SSH", http_inputs(f"{base}/data/blob.bin", target, force=True),
                  {"dag_id": "plainhttp2ssh"})
    assert forced.ok and forced.outputs["files"] == "1"
    assert landed.read_bytes() == data


def test_http_404_and_unreachable_name_source_and_destination(
        call: Call, web: tuple[str, Files], site_dir: Path) -> None:
    base, _ = web
    result = call(T + "HTTP2SSH", http_inputs(f"{base}/missing.bin", str(site_dir / "x.bin")),
                  {"dag_id": "plainhttp2ssh"})
    assert result.status == "failed"
    assert "404 not found" in result.message and f"{base}/missing.bin" in result.message
    assert str(site_dir / "x.bin") in result.message and "HTTP2SSH" in result.message
    port = closed_port()
    result = call(T + "HTTP2SSH", http_inputs(f"http://127.0.0.1:{port}/f",
                                              str(site_dir / "y.bin")),
                  {"dag_id": "plainhttp2ssh"})
    assert result.status == "failed"
    assert f"127.0.0.1:{port} unreachable" in result.message
    assert str(site_dir / "y.bin") in result.message
    assert not list(site_dir.iterdir())


def test_http_cancel_mid_transfer_stops_quickly(call: Call, web: tuple[str, Files],
                                                site_dir: Path) -> None:
    base, files = web
    files.slow_sent.clear()
    final = site_dir / "slow.bin"
    out: list[OperationResult] = []
    thread = threading.Thread(target=lambda: out.append(call(
        T + "HTTP2SSH", http_inputs(f"{base}/slow/big", str(final)),
        {"dag_id": "plainhttp2ssh"})))
    thread.start()
    assert files.slow_sent.wait(10)
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    call.cancel.set()
    thread.join(10)
    assert time.monotonic() - cancelled_at < 1.0
    assert out and out[0].status == "cancelled"
    assert not final.exists()
    assert not no_part_files(site_dir)


def test_http_timeout_stops_a_stalled_transfer(call: Call, web: tuple[str, Files],
                                               site_dir: Path) -> None:
    base, _ = web
    final = site_dir / "late.bin"
    began = time.monotonic()
    result = call(T + "HTTP2SSH", http_inputs(f"{base}/slow/late", str(final)),
                  {"dag_id": "plainhttp2ssh"}, timeout=1.5)
    assert result.status == "timeout", result.message
    assert time.monotonic() - began < 3.0
    assert not final.exists() and not no_part_files(site_dir)


# -- B2SHARE ------------------------------------------------------------------------------------


def b2share_inputs(oid: str, target: str, server: str, **extra: Any) -> dict[str, Any]:
    """Runnable.submit's inputs of DLSDAGStageInData."""
    return {"submit_tasks": "submit_dag_stagein_data.yaml", "dag_id": "taskflow_example",
            "oid": "", "oid_input": oid, "target_path": target, "target_path_input": "",
            "host": "", "host_from_env": "site", "port": 22, "login": "u", "vault_id": "",
            "conf": json.dumps({"b2share_server": server, **extra})}


def test_b2share_record_lands_verified_then_skips(call: Call, web: tuple[str, Files],
                                                  site_dir: Path) -> None:
    base, files = web
    payloads = {"a.csv": b"x,y\n1,2\n", "sub/b.bin": os.urandom(200_000)}
    b2share_record(files, base, "rec1", payloads)
    result = call(T + "DLSDAGStageInData", b2share_inputs("rec1", str(site_dir), base,
                                                          b2share_token=TOKEN),
                  {"dag_id": "taskflow_example"})
    assert result.ok, result.message
    for key, body in payloads.items():
        assert (site_dir / key).read_bytes() == body
    assert result.outputs["target_path"] == str(site_dir)
    assert files.tokens, "the access token is sent as B2SHARE's access_token parameter"
    hits = files.hits.get("/api/files/bucket-rec1/a.csv", 0)
    again = call(T + "DLSDAGStageInData", b2share_inputs("rec1", str(site_dir), base,
                                                         b2share_token=TOKEN, force="false"),
                 {"dag_id": "taskflow_example"})
    assert again.ok and again.outputs["skipped"] == "2"
    assert files.hits["/api/files/bucket-rec1/a.csv"] == hits, "skipped: not downloaded"
    forced = call(T + "DLSDAGStageInData", b2share_inputs("rec1", str(site_dir), base,
                                                          b2share_token=TOKEN, force="true"),
                  {"dag_id": "taskflow_example"})
    assert forced.ok and forced.outputs["files"] == "2"
    assert all(TOKEN not in line for line in call.lines)


def test_b2share_checksum_mismatch_fails_and_leaves_no_file(
        call: Call, web: tuple[str, Files], site_dir: Path) -> None:
    base, files = web
    b2share_record(files, base, "rec2", {"c.dat": b"payload"}, wrong_md5=True)
    result = call(T + "DLSDAGStageInData", b2share_inputs("rec2", str(site_dir), base),
                  {"dag_id": "taskflow_example"})
    assert result.status == "failed"
    assert "checksum mismatch" in result.message and "c.dat" in result.message
    assert not (site_dir / "c.dat").exists()
    assert not no_part_files(site_dir)


def test_b2share_unknown_record_is_not_found(call: Call, web: tuple[str, Files],
                                             site_dir: Path) -> None:
    base, _ = web
    result = call(T + "DLSDAGStageInData", b2share_inputs("nope", str(site_dir), base),
                  {"dag_id": "taskflow_example"})
    assert result.status == "failed"
    assert "404 not found" in result.message and "/api/records/nope" in result.message


# -- WebDAV -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dav() -> Iterator[tuple[str, Path]]:
    """WsgiDAV with basic auth (user 'dls', PASSWORD) over a temporary folder, in a thread."""
    with serve_webdav("dls", PASSWORD) as served:
        yield served


def webdav_in_inputs(oid: str, target: str, base: str, password: str = PASSWORD,
                     force: bool = False, standard: bool = True) -> dict[str, Any]:
    """Standard.start's inputs of DLSDAGWebdavStageInData (run_in_standard_mode)."""
    conf = {"webdav_url": base, "webdav_user": "dls", "webdav_password": password}
    return {"submit_tasks": "submit_dag_webdav_stagein_data.yaml", "dag_id": "webdav_stagein",
            "run_in_standard_mode": standard, "oid": oid, "target_path": target,
            "force": force, "host": "", "host_from_env": "site", "port": 22, "login": "u",
            "vault_id": "", "conf": conf}


def test_webdav_collection_lands_then_skips_then_forces(call: Call, dav: tuple[str, Path],
                                                        site_dir: Path) -> None:
    base, root = dav
    (root / "set1" / "deep").mkdir(parents=True)
    (root / "set1" / "one.txt").write_bytes(b"one\n")
    big = os.urandom(2 * 1024 * 1024 + 5)
    (root / "set1" / "deep" / "two.bin").write_bytes(big)
    target = str(site_dir / "stage")
    result = call(T + "DLSDAGWebdavStageInData", webdav_in_inputs("set1", target, base),
                  {"dag_id": "webdav_stagein"}, interface="Standard", operation="start",
                  secrets=(PASSWORD,))
    assert result.ok, result.message
    assert (site_dir / "stage" / "one.txt").read_bytes() == b"one\n"
    assert (site_dir / "stage" / "deep" / "two.bin").read_bytes() == big
    assert result.outputs["target_path"] == target and result.outputs["files"] == "2"
    again = call(T + "DLSDAGWebdavStageInData", webdav_in_inputs("set1", target, base),
                 {"dag_id": "webdav_stagein"}, interface="Standard", operation="start")
    assert again.ok and again.outputs["skipped"] == "2" and again.outputs["files"] == "0"
    forced = call(T + "DLSDAGWebdavStageInData",
                  webdav_in_inputs("set1", target, base, force=True),
                  {"dag_id": "webdav_stagein"}, interface="Standard", operation="start")
    assert forced.ok and forced.outputs["files"] == "2"
    assert not no_part_files(site_dir)
    assert all(PASSWORD not in line for line in call.lines)


def test_webdav_single_file_into_a_folder(call: Call, dav: tuple[str, Path],
                                          site_dir: Path) -> None:
    base, root = dav
    (root / "single.dat").write_bytes(b"single file\n")
    result = call(T + "DLSDAGWebdavStageInData",
                  webdav_in_inputs("single.dat", str(site_dir) + "/", base),
                  {"dag_id": "webdav_stagein"}, interface="Standard", operation="start")
    assert result.ok, result.message
    assert (site_dir / "single.dat").read_bytes() == b"single file\n"
    assert result.outputs["target_path"] == str(site_dir / "single.dat")


def test_webdav_wrong_password_and_missing_path(call: Call, dav: tuple[str, Path],
                                                site_dir: Path) -> None:
    base, root = dav
    (root / "guarded.txt").write_bytes(b"x")
    wrong = "not-the-Password-99"
    result = call(T + "DLSDAGWebdavStageInData",
                  webdav_in_inputs("guarded.txt", str(site_dir / "g.txt"), base, wrong),
                  {"dag_id": "webdav_stagein"}, interface="Standard", operation="start")
    assert result.status == "failed"
    assert "401 authentication refused" in result.message
    assert f"{base}/guarded.txt" in result.message and str(site_dir / "g.txt") in result.message
    assert wrong not in result.message and all(wrong not in line for line in call.lines)
    result = call(T + "DLSDAGWebdavStageInData",
                  webdav_in_inputs("no/such/thing", str(site_dir / "n"), base),
                  {"dag_id": "webdav_stagein"}, interface="Standard", operation="start")
    assert result.status == "failed"
    assert "404 not found" in result.message and "no/such/thing" in result.message
    assert not (site_dir / "g.txt").exists() and not (site_dir / "n").exists()


def test_webdav_stage_out_uploads_verified_then_skips(call: Call, dav: tuple[str, Path],
                                                      site_dir: Path) -> None:
    base, root = dav
    results = site_dir / "results"
    (results / "sub").mkdir(parents=True)
    (results / "r.txt").write_bytes(b"result\n")
    payload = os.urandom(1024 * 1024 + 3)
    (results / "sub" / "r.bin").write_bytes(payload)
    inputs = {"submit_tasks": "submit_dag_webdav_stageout_data.yaml",
              "dag_id": "webdav_stageout", "oid": "out/run1", "oid_input": "",
              "source_path": str(results), "source_path_input": "", "host_from_env": "site",
              "login": "u", "vault_id": "",
              "conf": {"webdav_url": base, "webdav_user": "dls", "webdav_password": PASSWORD}}
    result = call(T + "DLSDAGWebdavStageOutData", inputs, {"dag_id": "webdav_stageout"})
    assert result.ok, result.message
    assert (root / "out" / "run1" / "r.txt").read_bytes() == b"result\n"
    assert (root / "out" / "run1" / "sub" / "r.bin").read_bytes() == payload
    assert result.outputs["execution_url"] == f"{base}/out/run1"
    assert not [p for p in root.rglob("*.part")]
    again = call(T + "DLSDAGWebdavStageOutData", inputs, {"dag_id": "webdav_stageout"})
    assert again.ok and again.outputs["skipped"] == "2"
    assert all(PASSWORD not in line for line in call.lines)


# -- git --------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def git_daemon() -> Iterator[tuple[str, str]]:
    """A bare repository 'tools.git' served by a real ``git daemon``: (base URL, commit)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    root = Path(tempfile.mkdtemp(prefix="orch-dls-git-"))
    work = root / "work"
    (work / "src").mkdir(parents=True)
    (work / "README.md").write_text("tools\n")
    (work / "src" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.symlink("/etc/hostname", work / "leak")  # must not send orch's machine's file
    _git("init", "-q", "-b", "main", str(work))
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "first", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work).strip()
    _git("clone", "-q", "--bare", str(work), str(root / "tools.git"))
    port = closed_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
         "--listen=127.0.0.1", f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}", commit
    finally:
        daemon.terminate()
        daemon.wait(5)
        shutil.rmtree(root, ignore_errors=True)


def git_inputs(url: str, repo: str, target: str, **extra: Any) -> dict[str, Any]:
    """Runnable.submit's inputs of GIT2SSH."""
    return {"submit_tasks": "submit_dag_git2ssh_data.yaml", "dag_id": "git2ssh",
            "git_url": url, "git_url_input": "", "git_repo": repo, "git_repo_input": None,
            "target_path": target, "target_path_input": "", "host_from_env": "site",
            "login": "u", "vault_id": "", "conf": extra}


def test_git_tree_lands_then_skips_then_forces(call: Call, git_daemon: tuple[str, str],
                                              site_dir: Path) -> None:
    url, commit = git_daemon
    target = str(site_dir / "tools")
    result = call(T + "GIT2SSH", git_inputs(url, "tools.git", target), {"dag_id": "git2ssh"})
    assert result.ok, result.message
    assert (site_dir / "tools" / "README.md").read_text() == "tools\n"
    assert (site_dir / "tools" / "src" / "run.sh").read_text() == "#!/bin/sh\necho run\n"
    assert not (site_dir / "tools" / ".git").exists()
    assert not (site_dir / "tools" / "leak").exists()
    assert result.outputs["commit"] == commit and result.outputs["target_path"] == target
    again = call(T + "GIT2SSH", git_inputs(url, "tools.git", target), {"dag_id": "git2ssh"})
    assert again.ok and again.outputs["files"] == "0" and again.outputs["skipped"] == "2"
    forced = call(T + "GIT2SSH", git_inputs(url, "tools.git", target, force="true"),
                  {"dag_id": "git2ssh"})
    assert forced.ok and forced.outputs["files"] == "2"


def test_git_unreachable_or_missing_repository(call: Call, git_daemon: tuple[str, str],
                                               site_dir: Path) -> None:
    url, _ = git_daemon
    target = str(site_dir / "nothing")
    result = call(T + "GIT2SSH", git_inputs(url, "missing.git", target), {"dag_id": "git2ssh"})
    assert result.status == "failed"
    assert "git clone failed" in result.message and f"{url}/missing.git" in result.message
    assert target in result.message
    port = closed_port()
    result = call(T + "GIT2SSH", git_inputs(f"git://127.0.0.1:{port}", "x.git", target),
                  {"dag_id": "git2ssh"})
    assert result.status == "failed" and f"127.0.0.1:{port}" in result.message
    assert "GIT2SSH" in result.message
    assert not (site_dir / "nothing").exists()


# -- SSH to SSH ---------------------------------------------------------------------------------


@pytest.fixture
def source_site(ssh_server: Any) -> Iterator[tuple[Host, Path]]:
    """A second site: the same sshd as its unprivileged user, and a folder it can read."""
    folder = Path(tempfile.mkdtemp(prefix="orch-dls-src-"))
    folder.chmod(0o755)
    host = Host("other", address="127.0.0.1", port=ssh_server.port,
                user=ssh_server.unprivileged_user, identity_file=str(ssh_server.client_key))
    try:
        yield host, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ssh_inputs(source_host: str, source: str, target: str) -> dict[str, Any]:
    """Runnable.submit's inputs of SSH2SSH."""
    return {"submit_tasks": "submit_dag_ssh2ssh_data.yaml", "dag_id": "ssh2ssh",
            "source_path": source, "source_path_input": "", "source_host": source_host,
            "source_host_from_env": "", "source_port": 22, "source_login": "",
            "source_vault_id": "", "source_login_input": "", "source_vault_id_input": "",
            "target_path": target, "target_path_input": "", "target_host": "",
            "target_host_from_env": "site", "target_port": 22, "target_login": "",
            "target_vault_id": "", "target_login_input": "", "target_vault_id_input": ""}


def test_ssh2ssh_folder_and_file_land_then_skip(ssh_pool: TransportPool, ssh_host: Host,
                                                source_site: tuple[Host, Path],
                                                site_dir: Path) -> None:
    other, folder = source_site
    (folder / "nested").mkdir()
    (folder / "nested").chmod(0o755)
    payload = os.urandom(1024 * 1024 + 9)
    (folder / "a.bin").write_bytes(payload)
    (folder / "nested" / "b.txt").write_text("bee\n")
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    seen: list[str] = []

    def resolve(name: str) -> Host:
        seen.append(name)
        if name != "other-site":
            raise KeyError(name)
        return other

    call = Call(ssh_pool, ssh_host, resolve)
    target = str(site_dir / "copy")
    result = call(T + "SSH2SSH", ssh_inputs("other-site", str(folder), target),
                  {"dag_id": "ssh2ssh"})
    assert result.ok, result.message
    assert (site_dir / "copy" / "a.bin").read_bytes() == payload
    assert (site_dir / "copy" / "nested" / "b.txt").read_text() == "bee\n"
    assert seen == ["other-site"]
    again = call(T + "SSH2SSH", ssh_inputs("other-site", str(folder), target),
                 {"dag_id": "ssh2ssh"})
    assert again.ok and again.outputs["skipped"] == "2" and again.outputs["files"] == "0"
    one = call(T + "SSH2SSH", ssh_inputs("other-site", str(folder / "a.bin"),
                                         str(site_dir) + "/"), {"dag_id": "ssh2ssh"})
    assert one.ok, one.message
    assert (site_dir / "a.bin").read_bytes() == payload
    assert one.outputs["target_path"] == str(site_dir / "a.bin")
    missing = call(T + "SSH2SSH", ssh_inputs("other-site", str(folder / "nope"), target),
                   {"dag_id": "ssh2ssh"})
    assert missing.status == "failed"
    assert str(folder / "nope") in missing.message and target in missing.message
    unknown = call(T + "SSH2SSH", ssh_inputs("elsewhere", str(folder), target),
                   {"dag_id": "ssh2ssh"})
    assert unknown.status == "failed" and "elsewhere" in unknown.message
    assert not no_part_files(site_dir)


def test_http_to_orchs_own_machine(web: tuple[str, Files], tmp_path: Path) -> None:
    """A node hosted on orch's machine: the same transfer through plain files."""
    from orch.transport.base import HostKeyPolicy

    base, files = web
    files.routes["/local.txt"] = (b"local\n", {})
    pool = TransportPool(HostKeyPolicy())
    try:
        call = Call(pool, Host("localhost"))
        result = call(T + "HTTP2SSH", http_inputs(f"{base}/local.txt", str(tmp_path / "l.txt")),
                      {"dag_id": "plainhttp2ssh"})
    finally:
        pool.close_all()
    assert result.ok, result.message
    assert (tmp_path / "l.txt").read_bytes() == b"local\n"


def test_http_checksum_from_the_conf_is_verified(call: Call, web: tuple[str, Files],
                                                 site_dir: Path) -> None:
    base, files = web
    body = b"checked body\n"
    files.routes["/checked.txt"] = (body, {})
    good = "sha256:" + hashlib.sha256(body).hexdigest()
    bad = "sha256:" + hashlib.sha256(b"other").hexdigest()
    final = site_dir / "checked.txt"
    result = call(T + "HTTP2SSH", http_inputs(f"{base}/checked.txt", str(final),
                                              conf={"checksum": bad}),
                  {"dag_id": "plainhttp2ssh"})
    assert result.status == "failed" and "checksum mismatch" in result.message
    assert not final.exists() and not no_part_files(site_dir)
    result = call(T + "HTTP2SSH", http_inputs(f"{base}/checked.txt", str(final), force=False,
                                              conf={"checksum": good}),
                  {"dag_id": "plainhttp2ssh"})
    assert result.ok and final.read_bytes() == body
    hits = files.hits["/checked.txt"]
    again = call(T + "HTTP2SSH", http_inputs(f"{base}/checked.txt", str(final), force=False,
                                             conf={"checksum": good}),
                 {"dag_id": "plainhttp2ssh"})
    assert again.ok and again.outputs["skipped"] == "1"
    assert files.hits["/checked.txt"] == hits + 1  # asked, but its body was not read


def test_webdav_stage_out_refused_names_the_destination(call: Call, dav: tuple[str, Path],
                                                        site_dir: Path) -> None:
    base, _ = dav
    (site_dir / "r.txt").write_bytes(b"r")
    inputs = {"submit_tasks": "submit_dag_webdav_stageout_data.yaml",
              "dag_id": "webdav_stageout", "oid": "denied", "source_path": str(site_dir),
              "conf": {"webdav_url": base, "webdav_user": "dls",
                       "webdav_password": "wrong-Password-1"}}
    result = call(T + "DLSDAGWebdavStageOutData", inputs, {"dag_id": "webdav_stageout"})
    assert result.status == "failed"
    assert "401 authentication refused" in result.message
    assert f"{base}/denied" in result.message and str(site_dir) in result.message
    assert "wrong-Password-1" not in result.message
