"""orch serve: a real server process (``orch serve --listen``) over a local deployment whose
imperative workflow runs a script on this machine, talked to with httpx as a user would."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from sites.serve import Server, trigger, wait_for

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    (root / "w" / "scripts").mkdir(parents=True)
    (root / "w" / "blueprint.yaml").write_text(BLUEPRINT)
    (root / "w" / "scripts" / "noop.sh").write_text("#!/bin/sh\necho noop\n")
    (root / "w" / "scripts" / "work.sh").write_text(WORK)
    srv = Server(root, {
        **os.environ,
        "ORCH_STATE_DIR": str(root / "state"),
        "ORCH_DATA_HOME": str(root / "data"),
        "OUT_FILE": str(root / "out.txt"),
    })  # fmt: skip
    srv.orch("deploy", "w/blueprint.yaml", "-n", "demo")
    srv.orch("publish", "demo", "work", "--name", "demo-work")
    srv.orch("publish", "demo", "work", "--name", "bob-only", "--users", "bob")
    srv.add_users("alice", "bob")
    srv.start()
    yield srv
    srv.stop()


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
    inputs = {"count": 41, "greeting": "bonjour", "password": "hunter2-pw"}
    location = trigger(alice, "demo-work", inputs)
    state = wait_for(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
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
    location = trigger(alice, "demo-work", {"count": 50, "pause": 30})
    assert bob.get(location).status_code == 404
    # one execution of a deployment at a time (a cancel must reach that one only)
    assert bob.post("/workflows/demo-work", json={"inputs": {"count": 2}}).status_code == 409
    assert bob.delete(location).status_code == 404
    assert bob.get(location + "/logs").status_code == 404
    assert alice.get(location).json()["status"] == "RUNNING"
    _wait_for_line(alice, location, "Custom.work started")
    assert alice.delete(location).status_code == 202
    assert alice.get(location).json()["status"] in ("CANCELLING", "CANCELLED")
    state = wait_for(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
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
    # strings, as hpcwaas-api clients send them
    location = trigger(alice, "demo-work", {"count": "777", "pause": "3"})
    _wait_for_line(alice, location, "Custom.work started")
    server.kill(signal.SIGKILL)
    server.start()
    alice = server.client(server.tokens["alice"])
    assert alice.get(location).json()["status"] == "RUNNING"
    state = wait_for(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
    assert state["status"] == "SUCCESS", state
    lines = (server.root / "out.txt").read_text().splitlines()
    assert lines.count("line 777") == 1
    time.sleep(1)  # nothing starts it again
    assert (server.root / "out.txt").read_text().splitlines().count("line 777") == 1
    executions = json.loads(json.dumps(alice.get(location).json()))
    assert executions["outputs"] == {"greeting": "hello"}


def test_a_workflow_describes_its_inputs_for_the_form(server: Server):
    alice = server.client(server.tokens["alice"])
    detail = alice.get("/workflows/demo-work")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["workflow"] == "work" and body["application_id"] == "demo"
    by_name = {i["name"]: i for i in body["inputs"]}
    assert list(by_name) == ["count", "pause"]
    assert by_name["count"]["type"] == "integer" and by_name["count"]["required"] is True
    assert by_name["pause"]["default"] == 0 and by_name["pause"]["required"] is False
    assert alice.get("/workflows/bob-only").status_code == 404
    assert server.client(None).get("/workflows/demo-work").status_code == 401


def test_executions_are_listed_page_by_page_newest_first(server: Server):
    alice = server.client(server.tokens["alice"])
    made = []
    for count in (1, 2, 3):
        location = trigger(alice, "demo-work", {"count": count})
        wait_for(alice, location, {"SUCCESS", "FAILED", "CANCELLED"})
        made.append(location.rsplit("/", 1)[1])
    first = alice.get("/executions", params={"size": 2}).json()
    total = first["total_results"]
    assert total >= 3 and first["from"] == 0
    assert [e["id"] for e in first["executions"]] == made[::-1][:2]
    assert all(e["status"] == "SUCCESS" and e["workflow"] == "demo-work"
               for e in first["executions"])  # fmt: skip
    rest = alice.get("/executions", params={"from": 2, "size": 200}).json()
    assert rest["executions"][0]["id"] == made[0]
    assert len(rest["executions"]) == total - 2
    bob = server.client(server.tokens["bob"]).get("/executions").json()
    assert not {e["id"] for e in bob["executions"]} & set(made)
    assert alice.get("/executions", params={"size": 0}).status_code == 422


def test_an_execution_streams_its_progress_as_server_sent_events(server: Server):
    alice = server.client(server.tokens["alice"])
    location = trigger(alice, "demo-work", {"count": 60, "pause": 1, "password": "sse-secret-pw"})
    kinds, logs, ids = [], [], []
    with alice.stream("GET", location + "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = event_id = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                kinds.append(kind)
                if kind == "log":
                    logs.append(json.loads(line[6:])["content"])
                    ids.append(event_id)
    assert kinds[0] == "status" and kinds[-1] == "end", kinds
    assert kinds[-2] == "status"
    assert any("working 60" in text for text in logs), logs
    assert not any("sse-secret-pw" in text for text in logs), logs  # masked as everywhere
    assert ids == list(range(len(ids)))
    # a client that reconnects with Last-Event-ID gets what came after, then the end
    again = alice.get(location + "/events", headers={"Last-Event-ID": str(len(ids) - 2)})
    assert again.text.count("event: log") == 1 and "event: end" in again.text
    bob = server.client(server.tokens["bob"])
    assert bob.get(location + "/events").status_code == 404


def test_ssh_keys_are_listed_and_deleted_by_their_owner_only(server: Server):
    from orch.sites.credentials import CredentialStore

    alice = server.client(server.tokens["alice"])
    bob = server.client(server.tokens["bob"])
    made = alice.post("/ssh_keys", json={"metadata": {"site": "hpc1", "login": "al"}}).json()
    listed = alice.get("/ssh_keys").json()["ssh_keys"]
    mine = next(k for k in listed if k["id"] == made["id"])
    assert mine["metadata"] == {"site": "hpc1", "login": "al"}
    assert "public_key" not in mine and "private" not in json.dumps(listed).lower()
    assert made["id"] not in {k["id"] for k in bob.get("/ssh_keys").json()["ssh_keys"]}
    assert bob.delete(f"/ssh_keys/{made['id']}").status_code == 404
    credentials = CredentialStore(server.root / "data" / "credentials")
    assert credentials.key_path(made["id"]).exists()
    assert alice.delete(f"/ssh_keys/{made['id']}").status_code == 204
    assert not credentials.folder(made["id"]).exists()
    assert alice.delete(f"/ssh_keys/{made['id']}").status_code == 404


def test_tokens_are_listed_without_their_secret(server: Server):
    listed = server.orch("tokens", "list").stdout
    users = [line.split("\t")[1] for line in listed.splitlines()]
    assert {"alice", "bob"} <= set(users)
    for token in server.tokens.values():
        assert token.partition(".")[2] not in listed
        assert token.partition(".")[0] in listed


def test_an_oversized_body_is_refused_before_it_is_read(server: Server):
    alice = server.client(server.tokens["alice"])
    huge = {"inputs": {"count": 1, "greeting": "x" * (2 * 1024 * 1024)}}
    assert alice.post("/workflows/demo-work", json=huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"inputs": {"greeting": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    streamed = alice.post("/workflows/demo-work", content=chunks(),
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert streamed.status_code == 413
    assert alice.get("/workflows").status_code == 200


def test_the_page_is_served_with_a_strict_content_security_policy(server: Server):
    anyone = server.client(None)
    for path in ("/", "/auth/login"):
        response = anyone.get(path)
        assert response.status_code == 307 and response.headers["location"] == "/ui/index.html"
    page = anyone.get("/ui/index.html")
    assert page.status_code == 200 and "<form id=\"login-form\">" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert anyone.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert anyone.get("/ui/../store.py").status_code == 404
    assert anyone.get("/ui/secret.txt").status_code == 404


def test_a_keys_account_must_be_a_site_and_a_login_name(server: Server):
    alice = server.client(server.tokens["alice"])
    for metadata, field in (({"site": "hpc1", "login": "-oProxyCommand=x"}, "login"),
                            ({"site": "hpc1", "login": "a b"}, "login"),
                            ({"site": "../x", "login": "al"}, "site"),
                            ({"login": "al"}, "site"),
                            ({"site": "hpc1", "login": 7}, "login")):  # fmt: skip
        refused = alice.post("/ssh_keys", json={"metadata": metadata})
        assert refused.status_code == 422, (metadata, refused.text)
        assert refused.json()["detail"][0]["loc"] == ["body", "metadata", field]
    assert alice.post("/ssh_keys", json={"metadata": {"project": "x y z"}}).status_code == 201
