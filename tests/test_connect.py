"""``orch connect``: a local port forwarded through the real loopback Slurm site's sshd to an
HTTP server that a real Slurm job runs on the compute node; the forward ends with the job."""

from __future__ import annotations

import json
import shlex
import socket
import time
import urllib.request

from sites.cli import Orch, write_slurm_sites
from sites.fixtures import SlurmSite
from sites.hpc import job_blueprint
from sites.serve import free_port


def _blueprint(orch: Orch, port: int, seconds: int) -> None:
    """job.yaml: a job ``work`` serving a page on ``port`` of its node for ``seconds``."""
    folder = f"$HOME/connect-{port}"
    serve = f"timeout {seconds} python3 -m http.server {port} --bind 127.0.0.1; true"
    script = f"mkdir -p {folder} && cd {folder} && echo live plot {port} > index.html && {serve}"
    job_blueprint(orch, poll_interval="0.5 s", port=port,
                  command=json.dumps(f"sh -c {shlex.quote(script)}"))  # fmt: skip


def _sites(orch: Orch, slurm_site: SlurmSite, credential: str) -> None:
    write_slurm_sites(orch, slurm_site, credential)


def _running(orch: Orch) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = orch("status", "viewer", "-f", "json", check=None).stdout
        if '"running"' in status:
            return
        time.sleep(0.3)
    raise AssertionError("the job never ran")


def test_connect_reaches_a_server_in_a_job_and_ends_with_it(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    _sites(orch, slurm_site, credential)
    port = free_port()
    _blueprint(orch, port, 12)
    deploy = orch.start("deploy", "job.yaml", "-n", "viewer", "--poll-interval", "0.5")
    connect = None
    try:
        _running(orch)
        connect = orch.start("connect", "viewer", "work")
        url = connect.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), connect.stderr.read()  # type: ignore[union-attr]
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the server in the job may take a moment
            try:
                body = urllib.request.urlopen(url + "index.html", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert body == f"live plot {port}\n"
        # the job ends: so does the forward, cleanly
        assert connect.wait(timeout=60) == 0
        assert "forward closed" in connect.stderr.read()  # type: ignore[union-attr]
    finally:
        if connect is not None and connect.poll() is None:
            connect.kill()
        deploy.wait(timeout=120)
    assert deploy.returncode == 0, deploy.stderr.read()  # type: ignore[union-attr]


def test_connect_refuses_a_local_port_in_use_and_a_node_without_a_job(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    _sites(orch, slurm_site, credential)
    port = free_port()
    _blueprint(orch, port, 1)
    orch("deploy", "job.yaml", "-n", "viewer", "--poll-interval", "0.5", timeout=120)
    # the port is listed where the application is
    assert json.loads(orch("status", "viewer", "-f", "json").stdout)["ports"] == {"work": port}
    assert f"ports (orch connect viewer NODE):\n  work: {port}\n" in orch("status", "viewer").stdout
    done = orch("connect", "viewer", "work", check=1)
    assert "work/0 has no running job" in done.stderr
    unknown = orch("connect", "viewer", "nope", check=3)
    assert "no node 'nope' (nodes: login, work)" in unknown.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        number = taken.getsockname()[1]
        busy = orch("connect", "viewer", "work", "--local", str(number), check=3)
    assert f"local port {number} cannot be used" in busy.stderr
    assert "choose another with --local" in busy.stderr
