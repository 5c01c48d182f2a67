"""``orch deploy / undeploy / run / status / outputs / logs`` end to end, as a user runs them:
the real CLI in a subprocess, real shell and Python scripts, a real OpenSSH server on loopback
(from the ``ssh_server`` fixture), and ``kill -9`` for crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import REPO

ORCH = [sys.executable, "-m", "orch"]


class Orch:
    """Runs orch with one state folder, in one working folder."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"

    def command(self, args: tuple[str, ...]) -> list[str]:
        stateful = args[0] in (
            "deploy", "undeploy", "run", "cancel", "list", "status", "outputs", "logs"
        )  # fmt: skip
        return [*ORCH, *args, *(["--state-dir", str(self.state)] if stateful else [])]

    def __call__(
        self, *args: str, check: int | None = 0, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self.command(args), cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(args), cwd=self.root,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--format", "json").stdout)

    def write(self, name: str, text: str, mode: int = 0o755) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        path.chmod(mode)
        return path


@pytest.fixture
def orch(tmp_path: Path) -> Orch:
    return Orch(tmp_path)


def instance_states(orch: Orch, name: str) -> dict[str, str]:
    status = orch.json("status", name)
    return {i["id"]: i["state"] for i in status["instances"]}


# ---------------------------------------------------------------------------- local
def test_shipped_example_deploys_reports_and_undeploys(orch: Orch, tmp_path: Path):
    work = tmp_path / "hello-work"
    blueprint = REPO / "blueprints" / "hello" / "blueprint.yaml"
    proc = orch("deploy", str(blueprint), "-i", f"work_dir={work}", "-i", "samples=2000")
    assert "deploy 'hello-workflow': ok" in proc.stderr
    assert (work / "report.txt").read_text().startswith("pi estimate: 3.1")
    outputs = orch.json("outputs", "hello-workflow")
    assert outputs["result_file"] == f"{work}/report.txt"
    assert str(outputs["pi_estimate"]).startswith("3.1")
    states = instance_states(orch, "hello-workflow")
    assert set(states.values()) == {"started"}
    listed = orch.json("list")
    assert [d["name"] for d in listed] == ["hello-workflow"]
    logs = orch("logs", "hello-workflow").stdout
    assert "pi ~" in logs and "staged 100 lines" in logs
    # deploying again does nothing: everything is done
    again = orch("deploy", str(blueprint), "-i", f"work_dir={work}", "-i", "samples=2000")
    assert "0 operation(s) ok" in again.stderr
    orch("undeploy", "hello-workflow")
    assert not work.exists()  # the delete operation removed the folder
    assert orch.json("status", "hello-workflow")["status"] == "undeployed"


def test_inputs_are_checked_before_anything_runs(orch: Orch, tmp_path: Path):
    blueprint = REPO / "blueprints" / "hello" / "blueprint.yaml"
    inputs = orch.write("inputs.yaml", "samples: 0\nwork_dirr: /tmp/x\n", 0o644)
    proc = orch("deploy", str(blueprint), "-i", str(inputs), check=1)
    assert "inputs.yaml:1:10" in proc.stderr  # samples out of range, with file:line:col
    assert "inputs.yaml:2:1" in proc.stderr and "work_dir" in proc.stderr  # did you mean
    assert not (orch.state / "state.db").exists() or orch.json("list") == []


FAILING = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    good:
      type: tosca.nodes.SoftwareComponent
      interfaces:
        Standard:
          create: scripts/ok.sh
    bad:
      type: tosca.nodes.SoftwareComponent
      interfaces:
        Standard:
          create: scripts/fail.sh
          delete: scripts/ok.sh
    after_bad:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - dependency: bad
      interfaces:
        Standard:
          create: scripts/ok.sh
"""


def test_failed_operation_state_message_exit_code_and_undeploy(orch: Orch):
    orch.write("b/blueprint.yaml", FAILING, 0o644)
    orch.write("b/scripts/ok.sh", "#!/bin/sh\necho \"ok $NODE\" >> \"$LOG\"\n")
    orch.write(
        "b/scripts/fail.sh", "#!/bin/sh\necho first line\necho 'boom: disk full' >&2\nexit 3\n"
    )
    log = orch.root / "ran.log"
    os.environ["LOG"] = str(log)  # inherited by orch, then by the scripts (local host)
    try:
        proc = orch("deploy", "b/blueprint.yaml", "--name", "f", check=4)
        assert "bad/0 Standard.create failed on localhost (exit status 3)" in proc.stderr
        assert "boom: disk full" in proc.stderr
        # the independent branch went on; what depends on the failure did not run
        assert log.read_text().splitlines() == ["ok good"]
        states = instance_states(orch, "f")
        assert states == {"good/0": "started", "bad/0": "creating", "after_bad/0": "initial"}
        status = orch.json("status", "f")
        (failed,) = status["failures"]
        assert failed["instance"] == "bad/0" and failed["rc"] == 3
        assert "boom: disk full" in failed["tail"]
        # undeploy after a partial deploy: only what was created is deleted
        orch("undeploy", "f")
        assert log.read_text().splitlines() == ["ok good", "ok bad"]
    finally:
        del os.environ["LOG"]


BLOCKING = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
{nodes}
"""
NODE = """    n{i}:
      type: tosca.nodes.SoftwareComponent
{requirement}      interfaces:
        Standard:
          create: scripts/step.sh
"""


def _wait(predicate, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _blocking_chain(orch: Orch, count: int, blocker: int) -> Path:
    """n0 -> n1 -> ... ; n{blocker} waits for a 'go' file; every start/end is counted."""
    requirement = "      requirements:\n        - dependency: n{}\n"
    nodes = "".join(
        NODE.format(i=i, requirement=requirement.format(i - 1) if i else "") for i in range(count)
    )
    orch.write("c/blueprint.yaml", BLOCKING.format(nodes=nodes), 0o644)
    orch.write(
        "c/scripts/step.sh",
        f"""
        #!/bin/sh
        echo start >> "{orch.root}/count.$NODE"
        if [ "$NODE" = n{blocker} ]; then
          while [ ! -f "{orch.root}/go" ]; do sleep 0.05; done
        fi
        echo end >> "{orch.root}/count.$NODE"
        """,
    )
    return orch.root / "c" / "blueprint.yaml"


def _counts(orch: Orch, node: str) -> list[str]:
    path = orch.root / f"count.{node}"
    return path.read_text().split() if path.exists() else []


def test_kill_9_mid_deploy_then_resume_runs_each_completed_operation_once(orch: Orch):
    blueprint = _blocking_chain(orch, 5, blocker=2)
    first = orch.start("deploy", str(blueprint), "--name", "k")
    _wait(lambda: _counts(orch, "n2") == ["start"], what="n2 to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    (orch.root / "go").touch()
    # the state survived: n0 and n1 are done, n2 was interrupted mid-run
    states = instance_states(orch, "k")
    assert states["n0/0"] == "started" and states["n1/0"] == "started"
    assert states["n2/0"] == "creating" and states["n3/0"] == "initial"
    proc = orch("deploy", str(blueprint), "--name", "k")
    assert "interrupted" in proc.stderr
    assert _counts(orch, "n0") == ["start", "end"]  # completed before the kill: ran once
    assert _counts(orch, "n1") == ["start", "end"]
    # interrupted mid-run: ran again (the first, orphaned copy also finished once 'go' appeared)
    assert sorted(_counts(orch, "n2")) == ["end", "end", "start", "start"]
    assert _counts(orch, "n3") == ["start", "end"] and _counts(orch, "n4") == ["start", "end"]
    assert set(instance_states(orch, "k").values()) == {"started"}


def test_second_concurrent_deploy_is_refused(orch: Orch):
    blueprint = _blocking_chain(orch, 2, blocker=0)
    first = orch.start("deploy", str(blueprint), "--name", "busy")
    try:
        _wait(lambda: _counts(orch, "n0") == ["start"], what="n0 to start")
        second = orch("deploy", str(blueprint), "--name", "busy", check=5)
        assert "busy" in second.stderr and str(first.pid) in second.stderr
        undeploy = orch("undeploy", "busy", check=5)
        assert "busy" in undeploy.stderr
    finally:
        (orch.root / "go").touch()
        first.wait(timeout=30)
    assert first.returncode == 0


def test_sigint_stops_cleanly_and_resume_finishes(orch: Orch):
    blueprint = _blocking_chain(orch, 3, blocker=1)
    first = orch.start("deploy", str(blueprint), "--name", "int")
    _wait(lambda: _counts(orch, "n1") == ["start"], what="n1 to start")
    first.send_signal(signal.SIGINT)
    time.sleep(0.3)
    first.send_signal(signal.SIGINT)  # second interrupt: cancel the running operation
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130, err
    assert "cancelling" in err
    states = instance_states(orch, "int")
    assert states["n0/0"] == "started" and states["n2/0"] == "initial"
    (orch.root / "go").touch()
    orch("deploy", str(blueprint), "--name", "int")
    assert _counts(orch, "n0") == ["start", "end"]
    assert _counts(orch, "n2") == ["start", "end"]


def test_plan_and_graph(orch: Orch):
    blueprint = str(REPO / "blueprints" / "hello" / "blueprint.yaml")
    text = orch("plan", blueprint).stdout
    assert "dataset/0 Standard.create" in text
    plan = orch.json("plan", blueprint)
    ids = [s["id"] for s in plan["steps"]]
    assert ids.index("dataset/0:Standard.create") < ids.index("simulation/0:Standard.start")
    dot = orch("graph", blueprint).stdout
    assert dot.startswith("digraph") and "->" in dot
    mermaid = orch("graph", blueprint, "--format", "mermaid").stdout
    assert mermaid.startswith(("flowchart", "graph"))


# ---------------------------------------------------------------------------- over SSH
THREE_TIER = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - orch-types:1.0.0
node_types:
  demo.Database:
    derived_from: tosca.nodes.SoftwareComponent
    attributes:
      url: {{type: string}}
  demo.App:
    derived_from: tosca.nodes.SoftwareComponent
    attributes:
      greeting: {{type: string}}
topology_template:
  inputs:
    root_dir: {{type: string}}
  node_templates:
    server:
      type: orch.nodes.Host
      properties:
        address: 127.0.0.1
      capabilities:
        endpoint:
          properties:
            port: {port}
            credentials: {{user: {user}, token_type: private_key, token: {key}}}
    db:
      type: demo.Database
      requirements:
        - host: server
      interfaces:
        Standard:
          create:
            implementation: scripts/db.sh
            inputs:
              ROOT: {{get_input: root_dir}}
            outputs:
              DB_URL: [SELF, url]
    app:
      type: demo.App
      requirements:
        - host: server
        - dependency: db
      interfaces:
        Standard:
          configure:
            implementation:
              primary: scripts/app.py
              dependencies: [scripts/lib.txt]
            inputs:
              DB: {{get_attribute: [db, url]}}
              ROOT: {{get_input: root_dir}}
            outputs:
              GREETING: [SELF, greeting]
    web:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host: server
        - dependency: app
      interfaces:
        Standard:
          start:
            implementation: scripts/web.sh
            inputs:
              MESSAGE: {{get_attribute: [app, greeting]}}
              TOKEN: {{get_operation_output: [db, Standard, create, DB_TOKEN]}}
              ROOT: {{get_input: root_dir}}
  outputs:
    page: {{value: {{concat: [{{get_input: root_dir}}, /index.html]}}}}
    greeting: {{value: {{get_attribute: [app, greeting]}}}}
"""


def _three_tier(orch: Orch, server, user: str) -> Path:
    blueprint = orch.write(
        "t/blueprint.yaml",
        THREE_TIER.format(port=server.port, user=user, key=server.client_key),
        0o644,
    )
    orch.write(
        "t/scripts/db.sh",
        """
        #!/bin/sh
        mkdir -p "$ROOT" && echo "db on $(hostname) as $(id -un)" > "$ROOT/db.txt"
        export DB_URL="sqlite://$ROOT/db.txt"
        export DB_TOKEN=t0k3n
        """,
    )
    orch.write(
        "t/scripts/app.py",
        """
        import os
        lib = open("scripts/lib.txt").read().strip()
        with open(os.environ["ORCH_OUTPUTS"], "a") as out:
            out.write(f"GREETING=hello from {lib} via {os.environ['DB']}\\n")
        """,
    )
    orch.write("t/scripts/lib.txt", "the app library\n", 0o644)
    orch.write(
        "t/scripts/web.sh",
        """
        #!/bin/sh
        echo "<p>$MESSAGE ($TOKEN) on $HOST as $(id -un)</p>" > "$ROOT/index.html"
        """,
    )
    return blueprint


@pytest.mark.parametrize("user", ["root", "orchtest"])
def test_three_tier_over_ssh_with_attributes_flowing(orch: Orch, ssh_server, tmp_path, user):
    root = Path("/tmp") / f"orch-3tier-{user}-{os.getpid()}"
    blueprint = _three_tier(orch, ssh_server, user)
    known = ["--known-hosts", str(ssh_server.known_hosts)]
    orch("deploy", str(blueprint), "--name", "web", "-i", f"root_dir={root}", *known)
    try:
        page = (root / "index.html").read_text()
        assert page == (
            f"<p>hello from the app library via sqlite://{root}/db.txt (t0k3n) "
            f"on server as {user}</p>\n"
        )
        outputs = orch.json("outputs", "web")
        assert outputs["greeting"] == f"hello from the app library via sqlite://{root}/db.txt"
        status = orch.json("status", "web")
        hosts = {i["last_operation"]["host"] for i in status["instances"] if i["last_operation"]}
        assert hosts == {f"{user}@127.0.0.1:{ssh_server.port}"}
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_unknown_host_key_is_refused_unless_accepted(orch: Orch, ssh_server, tmp_path):
    blueprint = _three_tier(orch, ssh_server, "root")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    root = tmp_path / "out"
    proc = orch("deploy", str(blueprint), "-i", f"root_dir={root}", "--known-hosts", str(empty),
                check=4)  # fmt: skip
    assert "--accept-new-host-keys" in proc.stderr and "127.0.0.1" in proc.stderr
    orch("deploy", str(blueprint), "-i", f"root_dir={root}", "--known-hosts", str(empty),
         "--accept-new-host-keys")  # fmt: skip
    assert f"[127.0.0.1]:{ssh_server.port}" in empty.read_text()


def test_ssh_server_restarted_during_deploy(orch: Orch, ssh_server, tmp_path):
    """The connection dies between two remote operations: orch reconnects and goes on."""
    root = tmp_path / "out"
    blueprint = orch.write(
        "r/blueprint.yaml",
        f"""
        tosca_definitions_version: tosca_simple_yaml_1_3
        imports: [orch-types:1.0.0]
        topology_template:
          node_templates:
            server:
              type: orch.nodes.Host
              properties: {{address: 127.0.0.1}}
              capabilities:
                endpoint:
                  properties:
                    port: {ssh_server.port}
                    credentials:
                      {{user: root, token_type: private_key, token: {ssh_server.client_key}}}
            first:
              type: tosca.nodes.SoftwareComponent
              requirements: [{{host: server}}]
              interfaces: {{Standard: {{create: scripts/remote.sh}}}}
            pause:
              type: tosca.nodes.SoftwareComponent
              requirements: [{{dependency: first}}]
              interfaces: {{Standard: {{create: scripts/pause.sh}}}}
            second:
              type: tosca.nodes.SoftwareComponent
              requirements: [{{host: server}}, {{dependency: pause}}]
              interfaces: {{Standard: {{create: scripts/remote.sh}}}}
        """,
        0o644,
    )
    orch.write("r/scripts/remote.sh", f"#!/bin/sh\necho $NODE >> {root}.remote\n")
    orch.write(
        "r/scripts/pause.sh",
        f"#!/bin/sh\ntouch {root}.paused\nwhile [ ! -f {root}.go ]; do sleep 0.05; done\n",
    )
    proc = orch.start("deploy", str(blueprint), "--known-hosts", str(ssh_server.known_hosts))
    _wait(lambda: Path(f"{root}.paused").exists(), what="the local pause")
    ssh_server.restart()  # drops every connection
    Path(f"{root}.go").touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert Path(f"{root}.remote").read_text().split() == ["first", "second"]


# ---------------------------------------------------------------------------- more of the CLI
WORKFLOW = """
tosca_definitions_version: tosca_simple_yaml_1_3
interface_types:
  demo.Backup:
    derived_from: tosca.interfaces.Root
    operations:
      backup:
        description: Save the job's data.
node_types:
  demo.Job:
    derived_from: tosca.nodes.SoftwareComponent
    interfaces:
      Custom:
        type: demo.Backup
topology_template:
  inputs:
    api_password: {type: string}
  node_templates:
    job:
      type: demo.Job
      interfaces:
        Standard:
          create:
            implementation: scripts/step.sh
            inputs: {WHAT: created, SECRET: {get_input: api_password}}
          start:
            implementation: {primary: scripts/slow.sh, timeout: 0.5}
        Custom:
          operations:
            backup:
              implementation: scripts/step.sh
              inputs: {WHAT: backed-up, SECRET: {get_input: api_password}}
  workflows:
    backup:
      steps:
        save:
          target: job
          activities:
            - call_operation: Custom.backup
            - set_state: stopped
"""


def _workflow_blueprint(orch: Orch) -> Path:
    blueprint = orch.write("w/blueprint.yaml", WORKFLOW, 0o644)
    orch.write("w/scripts/step.sh",
               f'#!/bin/sh\necho "$WHAT with $SECRET" >> {orch.root}/steps.log\n'
               'echo "using $SECRET"\nexport RESULT="$WHAT:$SECRET"\n')  # fmt: skip
    orch.write("w/scripts/slow.sh", "#!/bin/sh\necho sleeping\nsleep 30\n")
    return blueprint


def test_timeout_secrets_json_events_and_workflow_run(orch: Orch):
    blueprint = _workflow_blueprint(orch)
    secret = "s3cr3t-value"
    started = time.monotonic()
    proc = orch("deploy", str(blueprint), "-n", "w", "-i", f"api_password={secret}",
                "--format", "json", check=4)  # fmt: skip
    assert time.monotonic() - started < 15  # the 30 s script was killed at its 0.5 s timeout
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run-start" and kinds[-1] == "result" and "step-end" in kinds
    ends = {e["step"]: e["data"]["status"] for e in events if e["kind"] == "step-end"}
    assert ends == {"job/0:Standard.create": "ok", "job/0:Standard.start": "timeout"}
    result = events[-1]
    assert result["status"] == "failed" and "timed out" in result["failures"][0]["message"]
    # the secret reached the script but was never stored nor shown
    assert (orch.root / "steps.log").read_text() == f"created with {secret}\n"
    assert secret not in proc.stdout + proc.stderr
    logs = orch("logs", "w").stdout
    assert "using *****" in logs and secret not in logs
    for path in orch.state.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    # a stored deployment's secret inputs must be given again
    refused = orch("run", "backup", "-n", "w", check=3)
    assert "api_password" in refused.stderr and "-i api_password=" in refused.stderr
    orch("run", "backup", "-n", "w", "-i", f"api_password={secret}")
    assert (orch.root / "steps.log").read_text().splitlines()[-1] == f"backed-up with {secret}"
    assert instance_states(orch, "w") == {"job/0": "stopped"}
    # a workflow can run again: each run is its own set of records
    orch("run", "backup", "-n", "w", "-i", f"api_password={secret}")
    assert (orch.root / "steps.log").read_text().count("backed-up") == 2


def test_logs_follow_streams_until_the_run_ends(orch: Orch):
    blueprint = _blocking_chain(orch, 2, blocker=0)
    orch.write("c/scripts/step.sh", (orch.root / "c/scripts/step.sh").read_text().replace(
        "echo end", "echo output-of-$NODE; echo end"))  # fmt: skip
    deploy = orch.start("deploy", str(blueprint), "--name", "follow")
    try:
        _wait(lambda: _counts(orch, "n0") == ["start"], what="n0 to start")
        follower = orch.start("logs", "follow", "--follow")
        time.sleep(0.5)
        (orch.root / "go").touch()
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        assert "output-of-n0" in out and "output-of-n1" in out
    finally:
        (orch.root / "go").touch()
        deploy.wait(timeout=30)


def test_fixing_a_script_and_deploying_again_resumes_with_the_fix(orch: Orch):
    orch.write("b/blueprint.yaml", FAILING, 0o644)
    orch.write("b/scripts/ok.sh", f'#!/bin/sh\necho "$NODE" >> {orch.root}/ran.log\n')
    orch.write("b/scripts/fail.sh", "#!/bin/sh\nexit 1\n")
    orch("deploy", "b/blueprint.yaml", "-n", "fix", "--fail-fast", check=4)
    orch.write("b/scripts/fail.sh", f'#!/bin/sh\necho "fixed $NODE" >> {orch.root}/ran.log\n')
    proc = orch("deploy", "b/blueprint.yaml", "-n", "fix")
    assert "1 already done" in proc.stderr  # good/0 did not run again
    assert (orch.root / "ran.log").read_text().split("\n").count("good") == 1
    assert "fixed bad" in (orch.root / "ran.log").read_text()
    assert set(instance_states(orch, "fix").values()) == {"started"}


def test_an_implementation_no_executor_runs_is_refused_before_anything_runs(orch: Orch):
    orch.write("u/blueprint.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            first:
              type: tosca.nodes.SoftwareComponent
              interfaces: {Standard: {create: scripts/ok.sh}}
            odd:
              type: tosca.nodes.SoftwareComponent
              interfaces: {Standard: {create: scripts/thing.exe}}
        """, 0o644)  # fmt: skip
    orch.write("u/scripts/ok.sh", f"#!/bin/sh\ntouch {orch.root}/ran\n")
    orch.write("u/scripts/thing.exe", "")
    proc = orch("deploy", "u/blueprint.yaml", check=3)
    assert "odd/0 Standard.create: no executor runs 'scripts/thing.exe'" in proc.stderr
    assert "executors: script:" in proc.stderr
    assert not (orch.root / "ran").exists()
    assert orch.json("status", "u")["status"] == "failed"  # named after its folder


def test_playbook_outputs_flow_into_a_script(orch: Orch):
    """An Ansible operation (ansible-runner, on localhost) feeds a script operation's input."""
    orch.write("a/blueprint.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            prepare:
              type: tosca.nodes.SoftwareComponent
              interfaces:
                Standard:
                  create:
                    implementation: playbooks/prepare.yml
                    inputs: {WHO: world}
            use:
              type: tosca.nodes.SoftwareComponent
              requirements: [{dependency: prepare}]
              interfaces:
                Standard:
                  create:
                    implementation: scripts/use.sh
                    inputs:
                      GREETING: {get_operation_output: [prepare, Standard, create, greeting]}
        """, 0o644)  # fmt: skip
    orch.write("a/playbooks/prepare.yml", """
        - hosts: all
          gather_facts: false
          tasks:
            - name: compute the greeting
              ansible.builtin.set_stats:
                data: {greeting: "hello {{ WHO }} from {{ NODE }}"}
        """, 0o644)  # fmt: skip
    orch.write("a/scripts/use.sh", f'#!/bin/sh\necho "$GREETING" > {orch.root}/greeting\n')
    orch("deploy", "a/blueprint.yaml")
    assert (orch.root / "greeting").read_text() == "hello world from prepare\n"
    assert "TASK [compute the greeting]" in orch("logs", "a").stdout


def test_an_input_that_cannot_be_evaluated_fails_its_operation_with_the_reason(orch: Orch):
    orch.write("e/blueprint.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            first:
              type: tosca.nodes.SoftwareComponent
              interfaces: {Standard: {create: scripts/ok.sh}}
            second:
              type: tosca.nodes.SoftwareComponent
              requirements: [{dependency: first}]
              interfaces:
                Standard:
                  create:
                    implementation: scripts/ok.sh
                    inputs:
                      VALUE: {get_operation_output: [first, Standard, create, NOT_EXPORTED]}
        """, 0o644)  # fmt: skip
    orch.write("e/scripts/ok.sh", "#!/bin/sh\nexport OTHER=1\n")
    proc = orch("deploy", "e/blueprint.yaml", check=4)
    assert "second/0 Standard.create failed" in proc.stderr
    assert "cannot evaluate the inputs: get_operation_output: first/0 Standard.create has no " \
        "output 'NOT_EXPORTED' (has it run? outputs: OTHER)" in proc.stderr
