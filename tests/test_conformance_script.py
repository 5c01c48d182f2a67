"""The executor contract (tests/conformance.py) for the script executor: shell scripts on orch's
own machine, and over SSH on the loopback sshd as its unprivileged user."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conformance import LAST_LINE, SECRET, ExecutorConformance, Failing, Harness
from sites.cli import host_template
from sites.processes import running
from sites.sshd import SshServer

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
OK = """#!/bin/sh
echo "creating $NODE"
export GREETING="hello from $NODE"
echo "ANSWER=42" >> "$ORCH_OUTPUTS"
"""
FAIL = f"""#!/bin/sh
echo "first line"
echo "{LAST_LINE}" >&2
exit 3
"""
SLOW = """#!/bin/sh
# one line per start and end, with the pid; runs until the 'go' file appears
echo "start $$" >> "$MARKS/slow.log"
echo "slow running"
while [ ! -f "$MARKS/go" ]; do sleep 0.1; done
echo "end $$" >> "$MARKS/slow.log"
"""
SECRET_SCRIPT = """#!/bin/sh
echo "the token is $TOKEN"
echo "$TOKEN" > "$MARKS/seen"
export LEAKED="token=$TOKEN"
"""


def node(name: str, script: str, *, hosted: bool, inputs: str = "", timeout: float | None = None,
         outputs: str = "") -> str:  # fmt: skip
    implementation = script if timeout is None else f"{{primary: {script}, timeout: {timeout}}}"
    lines = [f"    {name}:", "      type: conformance.Thing"]
    if hosted:
        lines += ["      requirements: [{host: site}]"]
    lines += ["      interfaces:", "        Standard:", "          create:",
              f"            implementation: {implementation}"]  # fmt: skip
    if inputs:
        lines.append(f"            inputs: {inputs}")
    if outputs:
        lines.append(f"            outputs: {outputs}")
    return "\n".join(lines) + "\n"


class ScriptConformance(ExecutorConformance):
    failing = Failing("broken", "Standard.create", rc=3)
    expected_outputs = {"answer": 42, "greeting": "hello from thing"}
    timeout_args = ()  # the blueprint's own TOSCA timeout
    remote = False

    def setup(self, h: Harness) -> None:
        for name, text in (("ok.sh", OK), ("fail.sh", FAIL), ("slow.sh", SLOW),
                           ("secret.sh", SECRET_SCRIPT)):  # fmt: skip
            h.write(text, name).chmod(0o755)

    def hosts(self, h: Harness) -> str:
        return ""

    def blueprint(self, h: Harness, kind: str) -> str:
        marks = f"{{MARKS: {h.scratch}}}"
        hosted = self.remote
        nodes = {
            "ok": node(
                "thing",
                "ok.sh",
                hosted=hosted,
                outputs="{ANSWER: [SELF, answer], GREETING: [SELF, greeting]}",
            ),
            "fail": node("broken", "fail.sh", hosted=hosted),
            "slow": node("slow", "slow.sh", hosted=hosted, inputs=marks),
            "timeout": node("slow", "slow.sh", hosted=hosted, inputs=marks, timeout=1.0),
            "secret": node(
                "thing",
                "secret.sh",
                hosted=hosted,
                inputs=f"{{MARKS: {h.scratch}, TOKEN: {{get_input: secret}}}}",
                outputs="{LEAKED: [SELF, greeting]}",
            ),
        }[kind]
        outputs = ""
        if kind == "ok":
            outputs = (
                "  outputs:\n    answer: {value: {get_attribute: [thing, answer]}}\n"
                "    greeting: {value: {get_attribute: [thing, greeting]}}\n"
            )
        if kind == "secret":
            outputs = "  outputs:\n    leaked: {value: {get_attribute: [thing, greeting]}}\n"
        return HEADER + self.hosts(h) + nodes + outputs

    # -- what runs
    def runs(self, h: Harness) -> list[tuple[str, int]]:
        log = h.scratch / "slow.log"
        if not log.exists():
            return []
        return [(kind, int(pid)) for kind, pid in
                (line.split() for line in log.read_text().splitlines())]  # fmt: skip

    def started(self, h: Harness) -> bool:
        runs = self.runs(h)
        return bool(runs) and runs[-1][0] == "start"

    def leftovers(self, h: Harness) -> list[str]:
        """The slow script's processes: found by the folder in their environment (MARKS)."""
        marker = f"MARKS={h.scratch}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ and running(int(entry.name)):
                found.append(f"pid {entry.name}")
        return found

    def release(self, h: Harness) -> None:
        (h.scratch / "go").touch()

    def before_kill(self, h: Harness) -> None:
        h.data["orphan"] = self.runs(h)[0][1]

    def while_resumed(self, h: Harness, resumed: subprocess.Popen[str]) -> None:
        time.sleep(1.5)
        assert resumed.poll() is None  # it waits for the killed orch's script...
        assert [kind for kind, _ in self.runs(h)] == ["start"]  # ...and starts no second copy

    def check_reattached(self, h: Harness, err: str) -> None:
        # the survivor was waited for, then the operation ran again (a script cannot be
        # re-attached to): one after the other, never two at once
        assert "waiting for slow/0 Standard.create" in err, err
        runs = self.runs(h)
        assert [kind for kind, _ in runs] == ["start", "end", "start", "end"], runs
        assert runs[0][1] == h.data["orphan"] != runs[2][1]

    def check_timed_out(self, h: Harness) -> None:
        assert [kind for kind, _ in self.runs(h)] == ["start"]  # it ran, and never ended

    def check_ok(self, h: Harness) -> None:
        attributes = h.attributes("thing")
        assert attributes["answer"] == 42 and attributes["greeting"] == "hello from thing"
        assert "creating thing" in h.logs()

    def secret_reached(self, h: Harness) -> None:
        assert (h.scratch / "seen").read_text().strip() == SECRET


class TestScriptLocal(ScriptConformance):
    pass


class TestScriptSsh(ScriptConformance):
    remote = True

    @pytest.fixture
    def site(self, ssh_server: SshServer) -> SshServer:
        return ssh_server

    def setup(self, h: Harness) -> None:
        super().setup(h)
        h.deploy_args = ["--known-hosts", str(h.site.known_hosts)]

    def hosts(self, h: Harness) -> str:
        return host_template(h.site, "site", user=h.site.unprivileged_user)

    def host(self, h: Harness) -> str:
        server: Any = h.site
        return f"{server.unprivileged_user}@127.0.0.1:{server.port}"
