"""orch serve: a real server process (``orch serve --listen``) over a local deployment whose
imperative workflow runs a script on this machine, talked to with httpx as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

BLUEPRINT = """\
tosca_definitions_version: tosca_simple_yaml_1_3
interface_types:
  demo.Work:
    derived_from: tosca.interfaces.Root
    operations:
      work: {}
node_types:
  demo.Job:
    derived_from: tosca.nodes.SoftwareComponent
    interfaces:
      Custom: {type: demo.Work}
topology_template:
  inputs:
    greeting: {type: string, default: hello}
    password: {type: string, default: default-pass, constraints: [{min_length: 8}]}
  node_templates:
    job:
      type: demo.Job
      interfaces:
        Standard:
          create: scripts/noop.sh
        Custom:
          operations:
            work:
              implementation: scripts/work.sh
              inputs:
                GREETING: {get_input: greeting}
                PASSWORD: {get_input: password}
  outputs:
    greeting: {value: {get_input: greeting}}
  workflows:
    work:
      inputs:
        count: {type: integer, required: true}
        pause: {type: float, default: 0}
      steps:
        go:
          target: job
          activities:
            - call_operation: Custom.work
"""
WORK = """#!/bin/sh
echo "working $count $GREETING with $PASSWORD"
sleep "$pause"
echo "line $count" >> "$OUT_FILE"
echo done
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.env = {
            **os.environ,
            "ORCH_STATE_DIR": str(root / "state"),
            "ORCH_DATA_HOME": str(root / "data"),
            "OUT_FILE": str(root / "out.txt"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def orch(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "orch", *args], env=self.env,
                              cwd=self.root, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == check, done.stderr
        return done

    def start(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orch", "serve", "--listen", f"127.0.0.1:{port}"],
            env=self.env, cwd=self.root, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/workflows", timeout=1)
                return
            except httpx.TransportError:
                assert self.proc.poll() is None, self.proc.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.1)
        raise AssertionError("orch serve did not start")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(10)

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    (root / "w" / "scripts").mkdir(parents=True)
    (root / "w" / "blueprint.yaml").write_text(BLUEPRINT)
    (root / "w" / "scripts" / "noop.sh").write_text("#!/bin/sh\necho noop\n")
    (root / "w" / "scripts" / "work.sh").write_text(WORK)
    srv = Server(root)
    srv.orch("deploy", "w/blueprint.yaml", "-n", "demo")
    srv.orch("publish", "demo", "work", "--name", "demo-work")
    srv.orch("publish", "demo", "work", "--name", "bob-only", "--users", "bob")
    for user in ("alice", "bob"):
        srv.orch("users", "add", user)
    srv.tokens = {u: srv.orch("tokens", "create", u).stdout.strip() for u in ("alice", "bob")}
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.kill()


def _trigger(client: httpx.Client, inputs: dict) -> str:
    response = client.post("/workflows/demo-work", json={"inputs": inputs})
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith("/executions/")
    return location


def _wait(client: httpx.Client, location: str, until: set[str], seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        state = client.get(location).json()
        if state["status"] in until or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_tokens_are_required_and_revocable(server: Server):
    assert server.client(None).get("/workflows").status_code == 401
    assert server.client("nope.bad").get("/workflows").status_code == 401
    token = server.orch("tokens", "create", "alice").stdout.strip()
    alice_again = server.client(token)
    assert alice_again.get("/workflows").status_code == 200
    server.orch("tokens", "revoke", token.partition(".")[0])
    assert alice_again.get("/workflows").status_code == 401
    assert server.client(token.partition(".")[0] + ".x").post("/ssh_keys").status_code == 401
    assert "openapi" in server.client(None).get("/openapi.json").json()


def test_list_trigger_watch_and_logs(server: Server):
    alice = server.client(server.tokens["alice"])
    listed = alice.get("/workflows").json()
    assert listed == {"workflows": [{
        "id": "demo-work", "name": "demo-work", "application_id": "demo",
        "environment_id": "demo", "environment_name": "demo",
    }]}  # fmt: skip
    bob_sees = [w["name"] for w in server.client(server.tokens["bob"]).get("/workflows").json()
                ["workflows"]]  # fmt: skip
    assert bob_sees == ["bob-only", "demo-work"]
    location = _trigger(alice, {"count": 41, "greeting": "bonjour", "password": "hunter2-pw"})
    state = _wait(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
    assert state["status"] == "SUCCESS", state
    assert state["outputs"] == {"greeting": "bonjour"}
    assert state["id"] == location.rsplit("/", 1)[1]
    logs = alice.get(location + "/logs", params={"timeout": "1s"}).json()
    contents = [entry["content"] for entry in logs["logs"]]
    assert any("working 41 bonjour" in c for c in contents), contents
    assert not any("hunter2-pw" in c for c in contents)
    assert logs["total_results"] == len(contents) and logs["from"] == 0
    assert {e["level"] for e in logs["logs"]} <= {"INFO", "WARN", "ERROR"}
    page = alice.get(location + "/logs", params={"from": 1, "size": 2}).json()
    assert page["logs"] == logs["logs"][1:3] and page["from"] == 1
    assert page["total_results"] == logs["total_results"]
    assert "hunter2-pw" not in (server.root / "state" / "serve").joinpath("serve.db").read_text(
        errors="replace")  # fmt: skip
    # the run is orch's own: `orch status` shows it
    assert "Custom.work" in server.orch("status", "demo").stdout


def test_bad_inputs_and_unknown_workflow(server: Server):
    alice = server.client(server.tokens["alice"])
    wrong = alice.post("/workflows/demo-work", json={"inputs": {"count": "many"}})
    assert wrong.status_code == 422
    (problem,) = wrong.json()["detail"]
    assert problem["loc"] == ["body", "inputs", "count"] and "integer" in problem["msg"]
    missing = alice.post("/workflows/demo-work", json={"inputs": {"pause": 1}})
    assert missing.status_code == 422
    assert [p["loc"][-1] for p in missing.json()["detail"]] == ["count"]
    unknown = alice.post("/workflows/demo-work", json={"inputs": {"count": 1, "colour": 2}})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "colour"
    secret = alice.post("/workflows/demo-work", json={"inputs": {"count": 1, "password": "pw-12"}})
    assert secret.status_code == 422 and secret.json()["detail"][0]["loc"][-1] == "password"
    assert "pw-12" not in secret.text
    assert alice.post("/workflows/nope", json={"inputs": {}}).status_code == 404
    assert alice.post("/workflows/bob-only", json={"inputs": {"count": 1}}).status_code == 404
    assert alice.get("/executions/0123456789abcdef").status_code == 404


def test_users_see_and_cancel_only_their_own(server: Server):
    alice = server.client(server.tokens["alice"])
    bob = server.client(server.tokens["bob"])
    location = _trigger(alice, {"count": 50, "pause": 30})
    assert bob.get(location).status_code == 404
    # one execution of a deployment at a time (a cancel must reach that one only)
    assert bob.post("/workflows/demo-work", json={"inputs": {"count": 2}}).status_code == 409
    assert bob.delete(location).status_code == 404
    assert bob.get(location + "/logs").status_code == 404
    assert alice.get(location).json()["status"] == "RUNNING"
    _wait_for_line(alice, location, "Custom.work started")
    assert alice.delete(location).status_code == 202
    assert alice.get(location).json()["status"] in ("CANCELLING", "CANCELLED")
    state = _wait(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
    assert state["status"] == "CANCELLED", state
    assert "line 50" not in (server.root / "out.txt").read_text()


def _wait_for_line(client: httpx.Client, location: str, text: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logs = client.get(location + "/logs", params={"timeout": "2s"}).json()["logs"]
        if any(text in entry["content"] for entry in logs):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in the logs")


def test_ssh_keys_keep_the_private_key(server: Server):
    from orch.sites.credentials import CredentialStore

    alice = server.client(server.tokens["alice"])
    response = alice.post("/ssh_keys", json={"metadata": {"site": "x", "privateKey": "no"}})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "public_key"} and body["public_key"].startswith("ssh-ed25519 ")
    credentials = CredentialStore(server.root / "data" / "credentials")
    private = credentials.key_path(body["id"]).read_text()
    assert "PRIVATE KEY" in private
    assert private.strip().splitlines()[1] not in response.text
    assert credentials.get(body["id"]).public_key == body["public_key"]
    assert alice.post("/ssh_keys").status_code == 201  # the body is optional


def test_a_killed_server_finds_its_executions_again(server: Server):
    alice = server.client(server.tokens["alice"])
    location = _trigger(alice, {"count": "777", "pause": "3"})  # strings, as hpcwaas sends
    _wait_for_line(alice, location, "Custom.work started")
    server.kill(signal.SIGKILL)
    server.start()
    alice = server.client(server.tokens["alice"])
    assert alice.get(location).json()["status"] == "RUNNING"
    state = _wait(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
    assert state["status"] == "SUCCESS", state
    lines = (server.root / "out.txt").read_text().splitlines()
    assert lines.count("line 777") == 1
    time.sleep(1)  # nothing starts it again
    assert (server.root / "out.txt").read_text().splitlines().count("line 777") == 1
    executions = json.loads(json.dumps(alice.get(location).json()))
    assert executions["outputs"] == {"greeting": "hello"}
