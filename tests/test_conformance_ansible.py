"""The executor contract (tests/conformance.py) for Ansible playbooks, run on orch's own machine
(connection local) through the fork server, as orch runs them by default."""

from __future__ import annotations

import subprocess
import time

import pytest

import test_conformance_script as scripts
from conformance import LAST_LINE, SECRET, ExecutorConformance, Failing, Harness
from sites.processes import running
from test_conformance_script import ScriptConformance

pytest.importorskip("ansible_runner")

HEADER = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-types:1.0.0]
node_types:
  conformance.Thing:
    derived_from: tosca.nodes.SoftwareComponent
    attributes:
      answer: {type: integer, required: false}
      greeting: {type: string, required: false}
topology_template:
  inputs:
    secret: {type: string, default: none-given, metadata: {sensitive: true}}
  node_templates:
"""
PLAYBOOKS = {
    "ok": """
- hosts: all
  gather_facts: false
  tasks:
    - name: greet
      debug: {msg: "creating {{ NODE }}"}
    - name: answer
      set_stats: {data: {answer: 42}}
    - name: greeting
      set_fact: {greeting: "hello from {{ NODE }}"}
""",
    "fail": f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: install the thing
      shell: |
        echo "first line"
        echo "{LAST_LINE}" >&2
        exit 3
""",
    "slow": """
- hosts: all
  gather_facts: false
  tasks:
    - name: wait for go
      shell: |
        echo "start $$" >> "$MARKS/slow.log"
        while [ ! -f "$MARKS/go" ]; do sleep 0.1; done
        echo "end $$" >> "$MARKS/slow.log"
      environment: {MARKS: "{{ MARKS }}"}
""",
    "secret": """
- hosts: all
  gather_facts: false
  tasks:
    - name: show
      debug: {msg: "the token is {{ TOKEN }}"}
    - name: keep
      shell: echo "{{ TOKEN }}" > "{{ MARKS }}/seen"
    - name: leak
      set_fact: {leaked: "token={{ TOKEN }}"}
""",
}


class TestAnsiblePlaybook(ExecutorConformance):
    # the record's exit status is ansible-playbook's (2: a task failed), the message says the
    # task's own (rc 3); the task's output line is followed by Ansible's PLAY RECAP
    failing = Failing("broken", "Standard.create", rc=2, rc_text="(rc 3)")
    tail_window = 3
    expected_outputs = {"answer": 42, "greeting": "hello from thing"}
    timeout_args = ()  # the blueprint's own TOSCA timeout

    # the slow playbook's markers are the script subclass's (slow.log, the MARKS environment)
    runs = ScriptConformance.runs
    started = ScriptConformance.started
    leftovers = ScriptConformance.leftovers
    release = ScriptConformance.release
    secret_reached = ScriptConformance.secret_reached

    remote = False
    hosts = ScriptConformance.hosts
    check_timed_out = ScriptConformance.check_timed_out
    playbook_timeout = 4
    """The ``timeout`` playbook's TOSCA timeout: long enough for its task to have started."""

    def setup(self, h: Harness) -> None:
        for kind, text in PLAYBOOKS.items():
            h.write(text.lstrip("\n"), f"{kind}.yml")

    def blueprint(self, h: Harness, kind: str) -> str:
        name = {"ok": "thing", "fail": "broken", "secret": "thing"}.get(kind, "slow")
        playbook = f"{'slow' if kind == 'timeout' else kind}.yml"
        implementation = playbook
        if kind == "timeout":
            implementation = f"{{primary: {playbook}, timeout: {self.playbook_timeout}}}"
        inputs = {"slow": f"{{MARKS: {h.scratch}}}", "timeout": f"{{MARKS: {h.scratch}}}",
                  "secret": f"{{MARKS: {h.scratch}, TOKEN: {{get_input: secret}}}}"}  # fmt: skip
        outputs = {"ok": "{answer: [SELF, answer], greeting: [SELF, greeting]}",
                   "secret": "{leaked: [SELF, greeting]}"}  # fmt: skip
        text = (
            HEADER
            + self.hosts(h)
            + (
                f"    {name}:\n"
                "      type: conformance.Thing\n"
                + ("      requirements: [{host: site}]\n" if self.remote else "")
                + "      interfaces:\n"
                "        Standard:\n"
                "          create:\n"
                f"            implementation: {implementation}\n"
            )
        )
        if kind in inputs:
            text += f"            inputs: {inputs[kind]}\n"
        if kind in outputs:
            text += f"            outputs: {outputs[kind]}\n"
        if kind == "ok":
            text += ("  outputs:\n    answer: {value: {get_attribute: [thing, answer]}}\n"
                     "    greeting: {value: {get_attribute: [thing, greeting]}}\n")  # fmt: skip
        return text

    def check_ok(self, h: Harness) -> None:
        attributes = h.attributes("thing")
        assert attributes["answer"] == 42 and attributes["greeting"] == "hello from thing"
        assert "creating thing" in h.logs()

    def before_kill(self, h: Harness) -> None:
        h.data["orphan"] = self.runs(h)[0][1]

    def while_resumed(self, h: Harness, resumed: subprocess.Popen[str]) -> None:
        """No second copy while the killed orch's one runs: if the same command starts the
        playbook again within a moment, the first copy is gone by then (the fork server ends
        what it ran when orch dies; over SSH, orch waits for it). ``check_reattached`` then
        checks the order of what ran."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and resumed.poll() is None:
            runs = self.runs(h)
            if len([k for k, _ in runs if k == "start"]) >= 2:
                assert not running(h.data["orphan"]), f"two copies at once: {runs}"
                break
            time.sleep(0.02)

    def check_reattached(self, h: Harness, err: str) -> None:
        runs = self.runs(h)
        starts = [pid for kind, pid in runs if kind == "start"]
        assert len(starts) == 2 and starts[0] == h.data["orphan"], runs
        assert runs[-2:] == [("start", starts[1]), ("end", starts[1])], runs
        assert SECRET not in err


class TestAnsiblePlaybookSsh(TestAnsiblePlaybook):
    """The same playbooks over SSH, as the test sshd's unprivileged user: the points where the
    remote host changes something (the host named in a failure, what a timeout, a cancel or a
    kill -9 leaves on it, the remote output's secrets); success and the records are the local
    class's, run the same way."""

    test_success_records_outputs_and_attributes = None  # type: ignore[assignment]
    test_the_operations_records_are_written = None  # type: ignore[assignment]

    remote = True
    site = scripts.TestScriptSsh.site
    hosts = scripts.TestScriptSsh.hosts
    host = scripts.TestScriptSsh.host
    settle_within = 3.0
    playbook_timeout = 6
    timeout_within = 30.0

    def test_timeout_ends_the_operation_as_timeout(self, h: Harness) -> None:
        super().test_timeout_ends_the_operation_as_timeout(h)

    def test_cancel_stops_it_and_leaves_nothing_running(self, h: Harness) -> None:
        super().test_cancel_stops_it_and_leaves_nothing_running(h)

    def test_reattach_after_kill_9_finishes_without_running_twice(self, h: Harness) -> None:
        super().test_reattach_after_kill_9_finishes_without_running_twice(h)

    def setup(self, h: Harness) -> None:
        super().setup(h)
        h.deploy_args = ["--known-hosts", str(h.site.known_hosts)]
