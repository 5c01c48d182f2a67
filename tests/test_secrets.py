"""A secret given to orch is never shown and never written in plain: the real CLI deploys a
blueprint whose operations run here and over SSH on the loopback sshd, then every file orch
wrote (state database and its WAL, logs, blobs, run artifacts, the site's work folder) is read
byte by byte for the secret."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from sites.cli import Orch, host_template

SECRET = "Pw-7f3c91e2-only-here"
"""Long and unique: if these bytes are anywhere, the secret leaked."""

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-types:1.0.0]
node_types:
  demo.Service:
    derived_from: tosca.nodes.SoftwareComponent
    attributes:
      url: {{type: string}}
topology_template:
  inputs:
    db_password: {{type: string}}
    api_key:
      type: string
      metadata: {{sensitive: true}}
      default: default-key-123456
    folder: {{type: string}}
  node_templates:
{site}    remote:
      type: demo.Service
      requirements: [{{host: site}}]
      interfaces:
        Standard:
          create:
            implementation: use.sh
            inputs: {{PASSWORD: {{get_input: db_password}}, DIR: {{get_input: folder}}}}
            outputs: {{URL: [SELF, url]}}
    broken:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: site}}]
      interfaces:
        Standard:
          create:
            implementation: use.sh
            inputs: {{PASSWORD: {{get_input: db_password}}, DIR: {{get_input: folder}}, FAIL: 1}}
    here:
      type: tosca.nodes.Root
      interfaces:
        Standard:
          create:
            implementation: use.sh
            inputs: {{PASSWORD: {{get_input: db_password}}, DIR: {{get_input: folder}}}}
  outputs:
    login:
      value: {{concat: ["postgres://app:", {{get_input: db_password}}, "@db/app"]}}
    url:
      value: {{get_attribute: [remote, url]}}
    key:
      value: {{get_input: api_key}}
    folder:
      value: {{get_input: folder}}
"""
USE = """
#!/bin/sh
# uses the secret, echoes it, exports it, fails to keep its work folder on request
echo "connecting with $PASSWORD"
echo "error: bad password $PASSWORD" >&2
export URL="postgres://app:$PASSWORD@db/app"
mkdir -p "$DIR"
if [ -n "${FAIL:-}" ]; then exit 3; fi
"""


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_no_secret_in_any_output_or_any_file_orch_writes(orch: Orch, ssh_server, tmp_path: Path):
    folder = Path(tempfile.mkdtemp(prefix="orch-secrets-"))
    folder.chmod(0o777)  # the site's user writes there too
    blueprint = orch.write(
        "s/blueprint.yaml", BLUEPRINT.format(site=host_template(ssh_server))
    )
    orch.write("s/use.sh", USE).chmod(0o755)
    known = ["--known-hosts", str(ssh_server.known_hosts)]
    remote_work = Path("/home/orchtest/.orch-work")
    subprocess.run(["rm", "-rf", str(remote_work)], check=False)
    proc = orch("deploy", str(blueprint), "-n", "sec", "-i", f"db_password={SECRET}",
                "-i", f"folder={folder}", *known, check=4)  # fmt: skip
    assert "work dir kept" in proc.stderr  # the broken node's, on the site
    json_run = orch("deploy", str(blueprint), "-n", "sec", "-i", f"db_password={SECRET}",
                    "-f", "json", *known, check=4)  # fmt: skip
    shown = [
        proc.stdout, proc.stderr, json_run.stdout, json_run.stderr,
        orch("outputs", "sec").stdout, orch("outputs", "sec", "-f", "yaml").stdout,
        orch("status", "sec").stdout, orch("status", "sec", "-f", "json").stdout,
        orch("logs", "sec").stdout, orch("logs", "sec", "-f", "json").stdout,
        orch("list", "-f", "json").stdout,
    ]  # fmt: skip
    for text in shown:
        assert SECRET not in text
        assert "default-key-123456" not in text
    outputs = json.loads(orch("outputs", "sec").stdout)
    assert outputs == {
        "login": "<secret: hidden>",
        "url": "postgres://app:*****@db/app",  # masked where the script's output had it
        "key": "<secret: hidden>",  # a sensitive input, even left to its default
        "folder": str(folder),
    }
    result = json.loads(json_run.stdout.splitlines()[-1])
    assert result["kind"] == "result" and result["outputs"]["login"] == "<secret: hidden>"
    assert "connecting with *****" in orch("logs", "sec").stdout
    # no file orch wrote holds it: state, WAL, logs, blobs, artifacts, the site's work folder
    state = orch.root / ".orch"
    assert files_holding(state, SECRET.encode()) == []
    # (a sensitive input's default is part of the blueprint's snapshot, as in the blueprint)
    assert files_holding(remote_work, SECRET.encode()) == []
    assert files_holding(orch.root, SECRET.encode()) == []
    # asked for, and given the secret again, the user sees it
    again = orch("outputs", "sec", "--show-secrets", "-i", f"db_password={SECRET}")
    assert json.loads(again.stdout)["login"] == f"postgres://app:{SECRET}@db/app"
    missing = orch("outputs", "sec", "--show-secrets", check=3)
    assert "db_password" in missing.stderr and SECRET not in missing.stderr
    orch("undeploy", "sec", "-i", f"db_password={SECRET}", *known)
    assert files_holding(state, SECRET.encode()) == []
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_a_secret_too_short_to_mask_is_warned_about_by_name(orch: Orch, tmp_path: Path):
    orch.write(
        "b/blueprint.yaml",
        """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          inputs:
            pin: {type: string, metadata: {sensitive: true}}
          node_templates:
            n:
              type: tosca.nodes.Root
              interfaces:
                Standard:
                  create:
                    implementation: x.sh
                    inputs: {PIN: {get_input: pin}}
        """,
    )
    orch.write("b/x.sh", "#!/bin/sh\necho 'an x in a line, an x again'\n").chmod(0o755)
    proc = orch("deploy", "b/blueprint.yaml", "-n", "p", "-i", "pin=x")
    assert "secret input 'pin' is shorter than 4 characters" in proc.stderr
    # not masked (that would garble every 'x' and give the secret away), and said so
    assert "an x in a line, an x again" in orch("logs", "p").stdout
