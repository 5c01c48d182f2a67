"""Ordinary faults of the machine orch runs on are said plainly, with a documented exit code,
never as 'internal error' (exit 70): state folders that cannot be made or written, unreadable
known_hosts files. The real CLI, and the loopback sshd for what needs a host."""

from __future__ import annotations

import pytest
from tests.conftest import REPO

from sites.cli import Orch, host_template

HELLO = REPO / "blueprints" / "hello" / "blueprint.yaml"


@pytest.mark.parametrize(
    "state_dir", ["/proc/orch-state", "/etc/hostname/orch-state", "/dev/null"],
    ids=["under-proc", "under-a-file", "a-device"],
)  # fmt: skip
def test_a_state_folder_that_cannot_be_used_is_exit_3(orch: Orch, state_dir: str):
    for command in (("deploy", str(HELLO), "-i", f"work_dir={orch.root / 'w'}"),
                    ("undeploy", "x"), ("status", "x"), ("list",), ("diff", "x")):  # fmt: skip
        proc = orch(*command, "--state-dir", state_dir, check=None)
        assert proc.returncode in (0, 3), (command, proc.returncode, proc.stderr)
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        assert state_dir in proc.stderr, proc.stderr
    assert not (orch.root / "w").exists()  # nothing ran


def test_a_known_hosts_file_that_is_not_text_is_named(orch: Orch, ssh_server):
    blueprint = orch.write(
        "k/blueprint.yaml",
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "imports: [orch-types:1.0.0]\n"
        "topology_template:\n"
        "  node_templates:\n"
        + host_template(ssh_server)
        + "    app:\n"
        "      type: tosca.nodes.SoftwareComponent\n"
        "      requirements: [{host: site}]\n"
        "      interfaces: {Standard: {create: run.sh}}\n",
    )
    orch.write("k/run.sh", "#!/bin/sh\ntrue\n").chmod(0o755)
    known = orch.root / "known_hosts"
    known.write_bytes(b"\xff\xfe\x00garbage \x80\x81 not a key\n")
    proc = orch("deploy", str(blueprint), "-n", "k", "--known-hosts", str(known), check=4)
    assert f"cannot read known_hosts {known}: it is not UTF-8 text" in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_deployment_names_the_known_ones(orch: Orch):
    orch("deploy", str(HELLO), "-n", "one", "-i", f"work_dir={orch.root / 'w'}")
    for command in (("status", "two"), ("undeploy", "two"), ("diff", "two"),
                    ("outputs", "two"), ("run", "x", "-n", "two")):  # fmt: skip
        proc = orch(*command, check=3)
        assert "'two'" in proc.stderr and "one" in proc.stderr, (command, proc.stderr)
