"""orch serve over the real loopback Slurm site: a real ``orch serve --listen`` process on a free
loopback port, talked to with httpx as a user of eFlows4HPC's hpcwaas-api would, whose
executions (``orch run`` children) submit real batch jobs over SSH (real sshd, munge,
slurmctld and slurmd from ``tests/sites``) as the site's unprivileged user. What Slurm did is
read from the cluster itself (squeue of every state: this cluster has no slurmdbd for sacct)."""

from __future__ import annotations

import json
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sites.cli import Orch, authorized_keys_file, wait_until
from sites.hpc import HpcSite, authorize, make_hpc_site
from sites.serve import ENDED, Server, trigger, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

DEPLOYMENTS = ("solo", "cancel", "busy", "again", "fails", "mine", "k0", "k1", "k2")
"""One deployment per concern (a deployment runs one execution at a time), each published
under its own name to every user; k0..k2 (job names serve-k0...) for three at once."""
BLUEPRINT = """\
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    greeting: {{type: string, default: hello}}
    pause: {{type: integer, default: 0, constraints: [{{in_range: [0, 300]}}]}}
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{site: hpc1}}
    work:
      type: orch.nodes.SlurmJob
      properties:
        job_name: {job}
        poll_interval: 0.5 s
        environment:
          GREETING: {{get_input: greeting}}
          PAUSE: {{get_input: pause}}
        script: |
          echo "job {job} says $GREETING"
          echo "job {job} label: $label"
          [ "$GREETING" != fail ] || exit 3
          sleep "$PAUSE"
          echo "job {job} done"
      requirements: [{{host: login}}]
  outputs:
    job_id: {{value: {{get_attribute: [work, job_id]}}}}
  workflows:
    compute:
      inputs:
        label: {{type: string, required: true}}
      steps:
        submit:
          target: work
          activities: [{{call_operation: Runnable.submit}}]
          on_success: [watch]
        watch:
          target: work
          activities: [{{call_operation: Runnable.run}}]
"""


@dataclass
class Slurm:
    """The site as the tests see it: the server, and the cluster's own view of the jobs."""

    server: Server
    hpc: HpcSite
    squeue_log: Path
    """Every squeue the site's sessions ran: "<epoch seconds> <arguments>" a line."""

    def squeue(self, *args: str) -> str:
        return self.hpc.site.cluster.run("squeue", "-h", *args).stdout

    def jobs(self, name: str) -> dict[str, str]:
        """{job id: state} of every job named ``name`` the cluster knows, ended ones too."""
        shown = self.squeue("-t", "all", "-n", name, "-o", "%A %T")
        return dict(line.split() for line in shown.splitlines() if line.strip())

    def state(self, job_id: str) -> str:
        return self.squeue("-t", "all", "-j", job_id, "-o", "%T").strip()


@pytest.fixture(scope="module")
def slurm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Slurm]:  # fmt: skip
    hpc = make_hpc_site(request, "slurm")
    root = tmp_path_factory.mktemp("serve-slurm")
    runner = Orch(root)
    keys = authorize(runner, hpc.ssh)
    token = next(keys)
    server: Server | None = None
    tools = Path()
    try:
        # squeue as the site's sessions find it: the real one, each call logged
        tools = Path(tempfile.mkdtemp(prefix="orch-serve-tools-"))
        tools.chmod(0o755)
        log = tools / "squeue.log"
        log.touch(mode=0o666)
        log.chmod(0o666)
        (tools / "squeue").write_text(
            f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {log}\nexec /usr/bin/squeue "$@"\n'
        )
        (tools / "squeue").chmod(0o755)
        (root / "sites.yaml").write_text("sites:\n" + hpc.yaml(token, "hpc1", tools))
        server = Server(root, {**runner.env(), "ORCH_STATE_DIR": str(root / "state")})
        for name in DEPLOYMENTS:
            (root / f"{name}.yaml").write_text(BLUEPRINT.format(job=f"serve-{name}"))
        # all at once (deploy submits no job: the workflow 'compute' does)
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "orch", "deploy", f"{name}.yaml", "-n", name],
                env=server.env,
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in DEPLOYMENTS
        }
        for name, proc in procs.items():
            _out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"deploy {name}: {err}"
        for name in ("solo", "cancel", "busy", "again", "fails", "mine"):
            server.orch("publish", name, "compute", "--name", name)
        server.add_users("alice", "bob")
        for i in range(3):
            server.orch("publish", f"k{i}", "compute", "--name", f"kill-{i}", "--users", "alice")
        server.orch("publish", "k0", "compute", "--name", "for-alice", "--users", "alice")
        server.orch("publish", "k1", "compute", "--name", "for-bob", "--users", "bob")
        server.start()
        yield Slurm(server, hpc, log)
    finally:
        if server is not None:
            server.stop()
        for name in DEPLOYMENTS:  # a failed test's job must not hold the node's CPUs
            hpc.site.cluster.run("scancel", "-n", f"serve-{name}", check=False)
        keys.close()
        shutil.rmtree(tools, ignore_errors=True)


def _contents(client: httpx.Client, location: str) -> list[str]:
    logs = client.get(location + "/logs", params={"timeout": "1s"}).json()
    return [entry["content"] for entry in logs["logs"]]


def test_trigger_watch_and_logs_of_a_slurm_job(slurm: Slurm) -> None:
    alice = slurm.server.client(slurm.server.tokens["alice"])
    before = slurm.jobs("serve-solo")
    location = trigger(alice, "solo", {"label": "first", "greeting": "bonjour-42"})
    state = wait_for(alice, location, ENDED)
    assert state["status"] == "SUCCESS", (state, _contents(alice, location))
    new = {k: v for k, v in slurm.jobs("serve-solo").items() if k not in before}
    assert list(new.values()) == ["COMPLETED"], new  # one job, submitted by this execution
    [job_id] = new
    assert state["outputs"] == {"job_id": job_id}
    contents = _contents(alice, location)
    text = "\n".join(contents)
    assert "job serve-solo says bonjour-42" in text, contents  # the input reached the job
    assert "job serve-solo done" in text
    assert "Runnable.submit" in text and "Runnable.run" in text, contents
    assert len([c for c in contents if c.startswith("Submitted batch job")]) == 1
    # the run is orch's own: `orch status` shows the job it watched
    status = json.loads(slurm.server.orch("status", "solo", "-f", "json").stdout)
    [work] = [i for i in status["instances"] if i["node"] == "work"]
    assert str(work["attributes"]["job_id"]) == job_id
    assert work["attributes"]["job_status"] == "COMPLETED"
    # what the job itself wrote, in its output file on the site
    output = Path(work["attributes"]["output"]).read_text()
    # the workflow's own input reached the job's environment too
    assert output == ("job serve-solo says bonjour-42\njob serve-solo label: first\n"
                      "job serve-solo done\n"), output  # fmt: skip


def _new_job(slurm: Slurm, name: str, before: dict[str, str], client: httpx.Client,
             location: str, states: tuple[str, ...] = ("PENDING", "RUNNING", "COMPLETED"),
             ) -> str:  # fmt: skip
    """The one job named ``name`` submitted since ``before`` (by the execution at
    ``location``), once Slurm shows it in ``states``."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = {k: v for k, v in slurm.jobs(name).items() if k not in before}
        if len(found) == 1 and next(iter(found.values())) in states:
            return next(iter(found))
        time.sleep(0.2)
    state = client.get(location).json()
    raise AssertionError(
        f"no job {name} in {states} (jobs: {found}); the execution: "
        f"{state}, its logs: {_contents(client, location)}"
    )


def test_delete_cancels_the_running_slurm_job(slurm: Slurm) -> None:
    alice = slurm.server.client(slurm.server.tokens["alice"])
    before = slurm.jobs("serve-cancel")
    location = trigger(alice, "cancel", {"label": "to cancel", "pause": 120})
    job_id = _new_job(slurm, "serve-cancel", before, alice, location, ("RUNNING",))
    assert alice.get(location).json()["status"] == "RUNNING"
    assert alice.delete(location).status_code == 202
    assert alice.get(location).json()["status"] in ("CANCELLING", "CANCELLED")
    state = wait_for(alice, location, ENDED)
    assert state["status"] == "CANCELLED", (state, _contents(alice, location))
    wait_until(lambda: slurm.state(job_id) == "CANCELLED", "Slurm to show the job cancelled",
               timeout=30, every=0.2)  # fmt: skip
    assert alice.delete(location).status_code == 202  # again: nothing more to do
    assert alice.get(location).json()["status"] == "CANCELLED"
    assert not any("job serve-cancel done" in c for c in _contents(alice, location))
    assert slurm.jobs("serve-cancel").keys() - before.keys() == {job_id}  # not submitted again


def test_ssh_key_made_by_the_api_logs_in_to_the_site(slurm: Slurm) -> None:
    from orch.sites.credentials import CredentialStore

    alice = slurm.server.client(slurm.server.tokens["alice"])
    response = alice.post("/ssh_keys", json={"metadata": {"site": "hpc1", "privateKey": "x"}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "public_key"} and body["public_key"].startswith("ssh-ed25519 ")
    key = CredentialStore(Path(slurm.server.env["ORCH_DATA_HOME"]) / "credentials").key_path(
        body["id"])  # fmt: skip
    private = key.read_text()
    assert "PRIVATE KEY" in private
    for line in private.strip().splitlines()[1:-1]:  # no line of the private key is shown
        assert line not in response.text
    ssh = slurm.hpc.ssh

    def login() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(ssh.port),
             "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={ssh.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             f"{ssh.unprivileged_user}@127.0.0.1", "id -un && squeue -h -o %i -j 1"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    assert login().returncode == 255  # not yet accepted by the site
    path = authorized_keys_file(ssh, ssh.unprivileged_user)
    before = path.read_text() if path.exists() else ""
    path.write_text(before + body["public_key"].strip() + "\n")
    try:
        done = login()
    finally:
        path.write_text(before)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == ssh.unprivileged_user
    # another user's token makes another key; neither response holds a private key
    other = slurm.server.client(slurm.server.tokens["bob"]).post("/ssh_keys")
    assert other.status_code == 201 and other.json()["id"] != body["id"]
    assert "PRIVATE" not in other.text and "PRIVATE" not in response.text


def test_error_statuses(slurm: Slurm) -> None:
    server = slurm.server
    alice = server.client(server.tokens["alice"])
    bob = server.client(server.tokens["bob"])
    before = slurm.jobs("serve-busy")
    alice_id = server.tokens["alice"].partition(".")[0]
    nobody = [server.client(None), server.client("nope.bad"), server.client(alice_id + ".bad")]
    for client in nobody:
        assert client.get("/workflows").status_code == 401
        refused = client.post("/workflows/busy", json={"inputs": {"label": "x"}})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert client.post("/ssh_keys").status_code == 401
    # unknown, or not published to this user
    assert alice.post("/workflows/nope", json={"inputs": {"label": "x"}}).status_code == 404
    assert bob.post("/workflows/for-alice", json={"inputs": {"label": "x"}}).status_code == 404
    assert alice.get("/executions/0123456789abcdef").status_code == 404
    # each field's problem, together
    wrong = alice.post("/workflows/busy", json={"inputs": {"pause": "long", "colour": "red"}})
    assert wrong.status_code == 422, wrong.text
    problems = {p["loc"][-1]: p["msg"] for p in wrong.json()["detail"]}
    assert set(problems) == {"pause", "colour", "label"}, problems
    assert all(p["loc"][:2] == ["body", "inputs"] for p in wrong.json()["detail"])
    assert "integer" in problems["pause"] and "colour" in problems["colour"]
    assert "label" in problems["label"]
    far = alice.post("/workflows/busy", json={"inputs": {"label": "x", "pause": "301"}})
    assert far.status_code == 422 and [p["loc"][-1] for p in far.json()["detail"]] == ["pause"]
    assert slurm.jobs("serve-busy") == before  # nothing above reached the site
    # a running execution: another user's is a 404 (GET, DELETE, logs), the deployment is busy
    location = trigger(alice, "busy", {"label": "busy", "pause": 4})
    job_id = _new_job(slurm, "serve-busy", before, alice, location, ("RUNNING",))
    for client in nobody:
        assert client.get(location).status_code == 401
        assert client.delete(location).status_code == 401
        assert client.get(location + "/logs").status_code == 401
    assert bob.get(location).status_code == 404
    assert bob.delete(location).status_code == 404
    assert bob.get(location + "/logs", params={"timeout": "1s"}).status_code == 404
    for client in (alice, bob):
        busy = client.post("/workflows/busy", json={"inputs": {"label": "again"}})
        assert busy.status_code == 409, busy.text
    assert alice.get(location).json()["status"] == "RUNNING"
    # bob's DELETE cancelled nothing: the job and the execution go on to their end
    assert wait_for(alice, location, ENDED)["status"] == "SUCCESS"
    assert slurm.jobs("serve-busy") == {**before, job_id: "COMPLETED"}
    # once it ended, the deployment takes the next one
    after = trigger(bob, "busy", {"label": "next"})
    assert wait_for(bob, after, ENDED)["status"] == "SUCCESS"
    assert len(slurm.jobs("serve-busy")) == len(before) + 2


def test_a_killed_server_sees_its_three_slurm_executions_to_their_end(slurm: Slurm) -> None:
    server = slurm.server
    alice = server.client(server.tokens["alice"])
    names = [f"serve-k{i}" for i in range(3)]
    before = {name: slurm.jobs(name) for name in names}
    locations = [trigger(alice, f"kill-{i}", {"label": f"k{i}", "pause": 5}) for i in range(3)]
    jobs = [
        _new_job(slurm, name, before[name], alice, loc)
        for name, loc in zip(names, locations, strict=True)
    ]
    server.kill(signal.SIGKILL)
    assert all(slurm.state(job) in ("PENDING", "RUNNING") for job in jobs)  # still to finish
    server.start()
    alice = server.client(server.tokens["alice"])
    assert [alice.get(loc).json()["status"] for loc in locations] == ["RUNNING"] * 3
    states = [wait_for(alice, loc, ENDED) for loc in locations]
    assert [s["status"] for s in states] == ["SUCCESS"] * 3, states
    assert [s["outputs"] for s in states] == [{"job_id": job} for job in jobs]
    time.sleep(1)  # nothing starts them again
    for name, job in zip(names, jobs, strict=True):
        assert {k: v for k, v in slurm.jobs(name).items() if k not in before[name]} == {
            job: "COMPLETED"}  # fmt: skip
    for loc, name in zip(locations, names, strict=True):
        contents = _contents(alice, loc)
        assert sum(f"job {name} done" in c for c in contents) == 1, contents


def test_two_users_at_once_see_only_their_own(slurm: Slurm) -> None:
    server = slurm.server
    clients = {u: server.client(server.tokens[u]) for u in ("alice", "bob")}
    listed = {u: [w["name"] for w in c.get("/workflows").json()["workflows"]]
              for u, c in clients.items()}  # fmt: skip
    shared = ["again", "busy", "cancel", "fails", "mine", "solo"]
    assert listed == {"alice": sorted([*shared, "for-alice", "kill-0", "kill-1", "kill-2"]),
                      "bob": sorted([*shared, "for-bob"])}, listed  # fmt: skip
    workflows = {"alice": "for-alice", "bob": "for-bob"}
    jobs = {"alice": "serve-k0", "bob": "serve-k1"}
    before = {u: slurm.jobs(jobs[u]) for u in clients}
    locations: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def start_as(user: str) -> None:
        try:
            start.wait(10)
            locations[user] = trigger(
                clients[user], workflows[user], {"label": user, "greeting": f"hi-{user}",
                                                 "pause": 2})  # fmt: skip
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start_as, args=(u,)) for u in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert [clients[u].get(locations[u]).json()["status"] for u in clients] == ["RUNNING"] * 2
    ran = {u: _new_job(slurm, jobs[u], before[u], clients[u], locations[u]) for u in clients}
    for user, other in (("alice", "bob"), ("bob", "alice")):
        mine, theirs = clients[user], locations[other]
        assert mine.get(theirs).status_code == 404
        assert mine.get(theirs + "/logs", params={"timeout": "1s"}).status_code == 404
        assert mine.delete(theirs).status_code == 404
    for user, other in (("alice", "bob"), ("bob", "alice")):
        state = wait_for(clients[user], locations[user], ENDED)
        assert state == {"id": locations[user].rsplit("/", 1)[1], "status": "SUCCESS",
                         "outputs": {"job_id": ran[user]}}, state  # fmt: skip
        text = "\n".join(_contents(clients[user], locations[user]))
        assert f"says hi-{user}" in text and f"hi-{other}" not in text, text


def _cancel_running(slurm: Slurm, client: httpx.Client, workflow: str) -> str:
    """An execution of ``workflow`` cancelled through the API once its job runs; its job."""
    before = slurm.jobs(f"serve-{workflow}")
    location = trigger(client, workflow, {"label": "to cancel", "pause": 120})
    job_id = _new_job(slurm, f"serve-{workflow}", before, client, location, ("RUNNING",))
    assert client.delete(location).status_code == 202
    assert wait_for(client, location, ENDED)["status"] == "CANCELLED"
    return job_id


def test_an_execution_after_a_cancelled_one_submits_a_new_job(slurm: Slurm) -> None:
    alice = slurm.server.client(slurm.server.tokens["alice"])
    cancelled = _cancel_running(slurm, alice, "again")
    before = slurm.jobs("serve-again")
    location = trigger(alice, "again", {"label": "after the cancel"})
    state = wait_for(alice, location, ENDED)
    # it FAILS at once: "no running job of work/0 to watch: submit it first", outputs
    # {"job_id": <the cancelled job>}; and so does every later execution of the workflow
    assert state["status"] == "SUCCESS", (state, _contents(alice, location))
    [submitted] = slurm.jobs("serve-again").keys() - before.keys()
    assert state["outputs"] == {"job_id": submitted} and submitted != cancelled


def test_a_failed_job_fails_its_execution_and_the_next_one_submits_again(slurm: Slurm) -> None:
    alice = slurm.server.client(slurm.server.tokens["alice"])
    before = slurm.jobs("serve-fails")
    failed = trigger(alice, "fails", {"label": "failing", "greeting": "fail"})
    state = wait_for(alice, failed, ENDED)
    assert state["status"] == "FAILED", state
    contents = _contents(alice, failed)
    assert any("exit code 3" in c for c in contents), contents
    assert any(entry["level"] == "ERROR" for entry in alice.get(
        failed + "/logs", params={"timeout": "1s"}).json()["logs"])  # fmt: skip
    [first] = slurm.jobs("serve-fails").keys() - before.keys()
    location = trigger(alice, "fails", {"label": "after the failure"})
    state = wait_for(alice, location, ENDED)
    assert state["status"] == "SUCCESS", (state, _contents(alice, location))
    [second] = slurm.jobs("serve-fails").keys() - before.keys() - {first}
    assert state["outputs"] == {"job_id": second}
    assert slurm.jobs("serve-fails") == {**before, first: "FAILED", second: "COMPLETED"}


def test_an_execution_logs_into_the_site_with_the_invoking_users_own_account(
    slurm: Slurm,
) -> None:
    """alice made a key for her account on hpc1 (here: root, while sites.yaml logs in as
    orchtest): her executions' jobs are hers; bob, who made none, runs as sites.yaml says."""
    alice = slurm.server.client(slurm.server.tokens["alice"])
    bob = slurm.server.client(slurm.server.tokens["bob"])
    ssh = slurm.hpc.ssh
    made = alice.post("/ssh_keys", json={"metadata": {"site": "hpc1", "login": ssh.user}})
    assert made.status_code == 201, made.text
    keys = authorized_keys_file(ssh, ssh.user)
    before = keys.read_text() if keys.exists() else ""
    keys.write_text(before + made.json()["public_key"] + "\n")
    try:
        owners = {}
        for name, client in (("alice", alice), ("bob", bob)):
            location = trigger(client, "mine", {"label": f"as {name}"})
            state = wait_for(client, location, ENDED)
            assert state["status"] == "SUCCESS", (state, _contents(client, location))
            status = json.loads(slurm.server.orch("status", "mine", "-f", "json").stdout)
            [work] = [i for i in status["instances"] if i["node"] == "work"]
            output = Path(work["attributes"]["output"])
            owners[name] = pwd.getpwuid(output.stat().st_uid).pw_name
            if name == "alice":
                execution = location.rsplit("/", 1)[1]
                accounts = slurm.server.root / "state" / "serve" / "executions" / execution
                accounts /= "accounts.json"
                assert json.loads(accounts.read_text()) == {
                    "hpc1": {"user": ssh.user, "credentials": made.json()["id"]}
                }
                assert accounts.stat().st_mode & 0o077 == 0
        assert owners == {"alice": ssh.user, "bob": ssh.unprivileged_user}
        # published for its invokers' own accounts only: bob, who has none, is refused
        slurm.server.orch("publish", "mine", "compute", "--name", "mine-own", "--own-accounts")
        refused = trigger(bob, "mine-own", {"label": "bob again"})
        assert wait_for(bob, refused, ENDED)["status"] == "FAILED"
        text = "\n".join(_contents(bob, refused))
        assert "used with its invoker's own account only, and they have none there" in text
        assert not any("Submitted batch job" in line for line in _contents(bob, refused))
        allowed = trigger(alice, "mine-own", {"label": "alice again"})
        assert wait_for(alice, allowed, ENDED)["status"] == "SUCCESS"
    finally:
        keys.write_text(before)
        # her key gone, her executions log in as sites.yaml says again
        assert alice.delete(f"/ssh_keys/{made.json()['id']}").status_code == 204


def test_executions_on_one_site_share_one_status_command_a_round(slurm: Slurm) -> None:
    """Three executions (three `orch run` processes) watching their jobs at once ask the site
    about all three jobs in one squeue a round, not one each."""
    alice = slurm.server.client(slurm.server.tokens["alice"])
    names = [f"serve-k{i}" for i in range(3)]
    before = {name: slurm.jobs(name) for name in names}
    start = time.time()
    locations = [trigger(alice, f"kill-{i}", {"label": f"s{i}", "pause": 4}) for i in range(3)]
    jobs = [_new_job(slurm, name, before[name], alice, location)
            for name, location in zip(names, locations, strict=True)]  # fmt: skip
    states = [wait_for(alice, location, ENDED) for location in locations]
    assert [s["status"] for s in states] == ["SUCCESS"] * 3, states
    calls = []  # (when, the jobs it asked about)
    for line in slurm.squeue_log.read_text().splitlines():
        when, *arguments = line.split()
        asked = arguments[arguments.index("-j") + 1].split(",") if "-j" in arguments else []
        if float(when) >= start and set(asked) & set(jobs):
            calls.append((float(when), asked))
    assert calls, "no status command asked about the jobs"
    together = [asked for _, asked in calls if len(set(asked) & set(jobs)) >= 2]
    assert together, f"no status command asked about two jobs at once: {calls}"
    # polled every 0.5 s: one command a round (a few more when a job starts or ends), where
    # each process asking for its own would be three
    span = calls[-1][0] - calls[0][0]
    assert len(calls) <= span / 0.5 * 1.5 + 6, (len(calls), span, calls)
