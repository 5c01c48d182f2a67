"""Stored inputs, ``orch diff`` and ``orch deploy --update``, as a user runs them: the real CLI,
the shipped hello blueprint and its scripts on this machine, and a blueprint over SSH to the
loopback sshd."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import REPO

from sites.cli import Orch, host_template

HELLO = REPO / "blueprints" / "hello"


@pytest.fixture
def hello(orch: Orch) -> Path:
    """A copy of the hello blueprint that a test may change."""
    target = orch.root / "hello"
    shutil.copytree(HELLO, target)
    return target / "blueprint.yaml"


def line_with(text: str, *parts: str) -> str:
    """The one line of ``text`` holding every part (columns are aligned with spaces)."""
    found = [line for line in text.splitlines() if all(part in line for part in parts)]
    assert len(found) == 1, f"no single line with {parts} in:\n{text}"
    return found[0]


def ran(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The operations a run reported, e.g. ['dataset/0 Standard.create']."""
    lines = [line for line in proc.stderr.splitlines() if "] ok " in line or "] failed " in line]
    return [line.split("  ", 2)[-1].split(" (")[0].strip() for line in lines]


def test_a_redeploy_without_inputs_keeps_them_and_undeploy_removes_what_was_deployed(
    orch: Orch, hello: Path
):
    """The reported bug: a second deploy without -i stored the defaults, and the undeploy then
    removed the default folder (a user's file in it) and left the deployed one."""
    deployed = orch.root / "A"
    default = orch.root / "default-work"
    text = hello.read_text().replace("default: /tmp/orch-hello", f"default: {default}")
    hello.write_text(text)
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={deployed}")
    default.mkdir()
    (default / "mine.txt").write_text("the user's own file\n")

    again = orch("deploy", str(hello), "-n", "r")
    assert ran(again) == [] and "0 operation(s) ok" in again.stderr
    assert f"result_file: {deployed}/report.txt" in again.stderr
    assert orch("diff", "r", "-i", f"work_dir={deployed}").returncode == 0  # still stored
    orch("undeploy", "r")
    assert not deployed.exists()
    assert (default / "mine.txt").read_text() == "the user's own file\n"


def test_changed_inputs_stop_the_deploy_with_the_diff_and_run_nothing(orch: Orch, hello: Path):
    first, second = orch.root / "A", orch.root / "B"
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={first}")
    proc = orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={second}", check=6)
    line_with(proc.stderr, "input work_dir", f"{first} -> {second}", "[store]")
    line_with(proc.stderr, "node dataset", "Standard.create: inputs changed", "[replace]")
    assert "--update would: replace dataset, report, simulation" in proc.stderr
    assert "nothing ran" in proc.stderr
    assert not second.exists() and (first / "report.txt").exists()
    # the stored inputs did not change either
    assert orch("diff", "r").returncode == 0


def test_diff_names_what_changed_and_its_json_says_what_update_does(orch: Orch, hello: Path):
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={orch.root / 'A'}")
    same = orch("diff", "r")
    assert same.stdout == "deployment 'r' is up to date with this blueprint and its inputs\n"
    proc = orch("diff", "r", "-i", "samples=5000", check=6)
    line_with(proc.stdout, "input samples", "1000 -> 5000", "[store]")
    line_with(proc.stdout, "simulation Standard.start", "inputs changed", "[run again]")
    line_with(proc.stdout, "report Standard.start", "reads attributes of simulation", "[run again]")
    data = json.loads(orch("diff", "r", "-i", "samples=5000", "-f", "json", check=6).stdout)
    assert data["kind"] == "diff" and data["drifted"] is True
    assert data["rerun"] == {"report": ["Standard.start"], "simulation": ["Standard.start"]}
    assert data["replace"] == data["create"] == data["delete"] == []


def test_update_runs_again_only_the_operations_whose_inputs_changed(orch: Orch, hello: Path):
    work = orch.root / "A"
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={work}")
    before = json.loads(orch("outputs", "r", "-f", "json").stdout)["pi_estimate"]
    proc = orch("deploy", str(hello), "-n", "r", "--update", "-i", "samples=20000")
    line_with(proc.stderr, "simulation Standard.start", "inputs changed", "[run again]")
    assert proc.stderr.index("[run again]") < proc.stderr.index("] ok ")
    assert ran(proc) == ["simulation/0 Standard.start", "report/0 Standard.start"]
    after = json.loads(orch("outputs", "r", "-f", "json").stdout)["pi_estimate"]
    assert after != before
    assert (work / "report.txt").read_text().startswith(f"pi estimate: {after}")
    # stored: deploying again without -i changes nothing more
    assert ran(orch("deploy", str(hello), "-n", "r")) == []
    assert orch("diff", "r", "-i", "samples=20000").returncode == 0


def test_update_replaces_a_node_whose_create_changed_deleting_with_the_old_inputs(
    orch: Orch, hello: Path
):
    first, second = orch.root / "A", orch.root / "B"
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={first}")
    proc = orch("deploy", str(hello), "-n", "r", "--update", "-i", f"work_dir={second}")
    assert ran(proc) == [
        "dataset/0 Standard.delete",
        "dataset/0 Standard.create",
        "simulation/0 Standard.start",
        "report/0 Standard.start",
    ]
    assert f"removed {first}" in orch("logs", "r").stdout
    assert not first.exists() and (second / "report.txt").exists()
    orch("undeploy", "r")  # with what the update deployed
    assert not second.exists()


def test_update_of_the_blueprint_creates_added_deletes_removed_and_sees_changed_files(
    orch: Orch, hello: Path
):
    work = orch.root / "A"
    orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={work}")
    text = hello.read_text()
    # the report node goes, an archive node comes, the simulation's script changes
    start = text.index("    report:")
    report = text[start : text.index("\n  outputs:", start) + 1]
    archive = report.replace("report:", "archive:")
    archive = archive.replace("scripts/report.sh", "scripts/archive.sh")
    text = text.replace(report, archive)
    hello.write_text(text)
    (hello.parent / "scripts" / "archive.sh").write_text(
        '#!/bin/sh\nset -eu\ntar -C "$WORK_DIR" -cf "$WORK_DIR/archive.tar" pi.txt\necho archived\n'
    )
    script = hello.parent / "scripts" / "simulate.py"
    script.write_text(script.read_text().replace("Random(42)", "Random(7)"))

    diff = orch("diff", "r", check=6).stdout
    line_with(diff, "node archive", "added (tosca.nodes.SoftwareComponent)", "[create]")
    line_with(diff, "node report", "removed (tosca.nodes.SoftwareComponent)", "[delete]")
    line_with(diff, "simulation Standard.start", "implementation file changed", "[run again]")
    proc = orch("deploy", str(hello), "-n", "r", "--update")
    assert ran(proc) == ["simulation/0 Standard.start", "archive/0 Standard.start"]
    assert (work / "archive.tar").exists()
    status = json.loads(orch("status", "r", "-f", "json").stdout)
    assert sorted(i["id"] for i in status["instances"]) == [
        "archive/0", "dataset/0", "laptop/0", "simulation/0"
    ]  # fmt: skip
    assert orch("diff", "r").returncode == 0


def test_update_over_ssh(orch: Orch, ssh_server, tmp_path: Path):
    """The same over SSH: the delete of the replaced node runs on the site with the old input."""
    root = Path("/tmp") / f"orch-update-{tmp_path.name}"
    blueprint = orch.write(
        "s/blueprint.yaml",
        f"""
        tosca_definitions_version: tosca_simple_yaml_1_3
        imports: [orch-types:1.0.0]
        topology_template:
          inputs:
            folder: {{type: string}}
            greeting: {{type: string, default: hello}}
          node_templates:
{host_template(ssh_server, indent=12)}            files:
              type: tosca.nodes.SoftwareComponent
              requirements: [{{host: site}}]
              interfaces:
                Standard:
                  create:
                    implementation: make.sh
                    inputs: {{DIR: {{get_input: folder}}}}
                  configure:
                    implementation: greet.sh
                    inputs: {{DIR: {{get_input: folder}}, TEXT: {{get_input: greeting}}}}
                  delete:
                    implementation: remove.sh
                    inputs: {{DIR: {{get_input: folder}}}}
        """,
    )
    orch.write("s/make.sh", '#!/bin/sh\nmkdir -p "$DIR" && echo made > "$DIR/made"\n')
    orch.write("s/greet.sh", '#!/bin/sh\necho "$TEXT" > "$DIR/greeting"\n')
    orch.write("s/remove.sh", '#!/bin/sh\nrm -rf "$DIR"\n')
    known = ["--known-hosts", str(ssh_server.known_hosts)]
    one, two = root / "one", root / "two"
    try:
        orch("deploy", str(blueprint), "-n", "s", "-i", f"folder={one}", *known)
        assert (one / "greeting").read_text() == "hello\n"
        proc = orch("deploy", str(blueprint), "-n", "s", "-i", "greeting=bonjour", *known,
                    check=6)  # fmt: skip
        line_with(proc.stderr, "files Standard.configure", "inputs changed", "[run again]")
        proc = orch("deploy", str(blueprint), "-n", "s", "--update", "-i", "greeting=bonjour",
                    *known)  # fmt: skip
        assert ran(proc) == ["files/0 Standard.configure"]
        assert (one / "greeting").read_text() == "bonjour\n"
        proc = orch("deploy", str(blueprint), "-n", "s", "--update", "-i", f"folder={two}",
                    *known)  # fmt: skip
        assert ran(proc) == [
            "files/0 Standard.delete", "files/0 Standard.create", "files/0 Standard.configure"
        ]  # fmt: skip
        assert not one.exists() and (two / "greeting").read_text() == "bonjour\n"
        orch("undeploy", "s", *known)
        assert not two.exists()
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_after_a_failure_a_fixed_input_is_used_without_an_update(orch: Orch, hello: Path):
    """Only what was deployed can drift: an input that only operations that never succeeded
    use is simply taken, and the resume runs them with it."""
    bad = orch.root / "not-a-folder"
    bad.write_text("a file where the work folder should be")
    failed = orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={bad}", check=4)
    assert "dataset/0 Standard.create failed" in failed.stderr
    good = orch.root / "work"
    proc = orch("deploy", str(hello), "-n", "r", "-i", f"work_dir={good}")
    assert "differs" not in proc.stderr
    assert ran(proc) == [
        "dataset/0 Standard.create", "simulation/0 Standard.start", "report/0 Standard.start"
    ]  # fmt: skip
    assert (good / "report.txt").exists()
    orch("undeploy", "r")  # with the input it was deployed with in the end
    assert not good.exists() and bad.read_text().startswith("a file")
