"""Slurm jobs through `orch deploy`, on the loopback Slurm site (real sshd, munge, slurmctld and
slurmd from ``tests/sites``), as the site's unprivileged user with a credential token: submit,
watch in rounds, exit codes and output tails, cancel, `kill -9` of orch then resume, and a site
that cannot be reached."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml, wait_until
from sites.fixtures import SlurmSite

HEADER = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
"""


def job(name: str, body: str) -> str:
    lines = [f"    {name}:"] + [f"      {line}" for line in body.strip("\n").splitlines()]
    return "\n".join(lines) + "\n      requirements: [{host: login}]\n"


@pytest.fixture
def site(orch: Orch, slurm_site: SlurmSite, credential: str) -> SlurmSite:
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, credential, partition="debug"))
    return slurm_site


def deploy(orch: Orch, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    return orch("deploy", "bp.yaml", "--poll-interval", "0.5", *args, check=check, timeout=120)


def status(orch: Orch, name: str = "bp") -> dict:
    return json.loads(orch("status", name, "-f", "json").stdout)


def attributes(orch: Orch, node: str, name: str = "bp") -> dict:
    data = status(orch, name)
    [instance] = [i for i in data["instances"] if i["node"] == node]
    return instance["attributes"]


def submitted(site: SlurmSite) -> set[str]:
    """Every job the cluster knows, ended ones included."""
    return set(site.cluster.run("squeue", "-h", "-t", "all", "-o", "%A").stdout.split())


def test_a_job_runs_with_its_options_and_reports_its_end(orch: Orch, site: SlurmSite) -> None:
    orch.write("bp.yaml", HEADER + job("hello", """
type: orch.nodes.SlurmJob
properties:
  command: printf
  arguments: ["%s and %s\\n", "$GREETING", "it's quoted"]
  environment: {GREETING: hello}
  time: 2 m
  memory: 50 MB
  partition: long
  tasks: 1
""") + job("ranks", """
type: orch.nodes.MPIJob
properties:
  command: hostname
  tasks: 2
"""))  # fmt: skip
    deploy(orch)
    hello = attributes(orch, "hello")
    assert hello["job_status"] == "COMPLETED" and hello["exit_code"] == 0
    assert hello["node_list"] and hello["elapsed"]
    work = hello["work_dir"]
    assert work == "/home/orchtest/orch-work/bp/hello"
    script = Path(work, "hello.sbatch").read_text()
    for line in ("#SBATCH --partition=long", "#SBATCH --time=0-00:02:00", "#SBATCH --mem=50M",
                 "#SBATCH --ntasks=1", f"#SBATCH --output={work}/hello-%j.out"):
        assert line in script.splitlines(), script
    assert Path(hello["output"]).read_text() == "$GREETING and it's quoted\n"
    ranks = attributes(orch, "ranks")
    assert "#SBATCH --partition=debug" in Path(ranks["work_dir"], "ranks.sbatch").read_text()
    assert Path(ranks["output"]).read_text().count("\n") == 2  # srun started two tasks
    logs = orch("logs", "bp").stdout
    assert "$GREETING and it's quoted" in logs


def test_a_failing_job_reports_exit_code_and_output_tail(orch: Orch, site: SlurmSite) -> None:
    orch.write("bp.yaml", HEADER + job("broken", """
type: orch.nodes.SlurmJob
properties:
  script: |
    echo "computing step 1"
    echo "step 2: matrix is singular" >&2
    exit 3
"""))  # fmt: skip
    proc = deploy(orch, check=4)
    ended = r"job (\d+) on orchtest@127\.0\.0\.1:\d+ ended FAILED: exit code 3"
    found = re.search(ended, proc.stderr)
    assert found, proc.stderr
    assert "step 2: matrix is singular" in proc.stderr
    assert "Traceback" not in proc.stderr
    broken = attributes(orch, "broken")
    assert broken["exit_code"] == 3 and broken["job_status"] == "FAILED"


def test_orch_cancel_runs_scancel(orch: Orch, site: SlurmSite) -> None:
    orch.write("bp.yaml", HEADER + job("long", """
type: orch.nodes.SlurmJob
properties: {command: sleep 120}
"""))  # fmt: skip
    proc = orch.start("deploy", "bp.yaml", "--poll-interval", "0.5")
    try:
        job_id = wait_for_job(orch, "long")
        wait_until(lambda: site.cluster.run("squeue", "-h", "-j", job_id, "-o", "%T")
                   .stdout.strip() == "RUNNING", "the job to run")  # fmt: skip
        orch("cancel", "bp", timeout=60)
        assert proc.wait(60) == 130
    finally:
        proc.kill()
    wait_until(lambda: site.cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T")
               .stdout.strip() == "CANCELLED", "Slurm to show the job cancelled", 30)  # fmt: skip
    assert attributes(orch, "long")["job_status"] == "CANCELLED"


def test_kill_9_then_resume_reattaches_to_the_same_jobs(orch: Orch, site: SlurmSite) -> None:
    orch.write("bp.yaml", HEADER + "".join(job(f"j{i}", """
type: orch.nodes.SlurmJob
properties: {command: sleep 4}
""") for i in range(3)))  # fmt: skip
    before = submitted(site)
    proc = orch.start("deploy", "bp.yaml", "--poll-interval", "0.5")
    try:
        ids = [wait_for_job(orch, f"j{i}") for i in range(3)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = deploy(orch)
    assert submitted(site) - before == set(ids)  # nothing submitted again
    assert [attributes(orch, f"j{i}")["job_id"] for i in range(3)] == ids
    assert all(attributes(orch, f"j{i}")["job_status"] == "COMPLETED" for i in range(3))
    assert "interrupted by the previous run" in resumed.stderr or resumed.returncode == 0


def test_an_unreachable_site_is_named(orch: Orch, slurm_site: SlurmSite, credential: str) -> None:
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, credential, port=1))
    body = "type: orch.nodes.SlurmJob\nproperties: {command: 'true'}"
    orch.write("bp.yaml", HEADER + job("j", body))
    proc = deploy(orch, check=4)
    assert "127.0.0.1:1" in proc.stderr and "Traceback" not in proc.stderr


# -- helpers ----------------------------------------------------------------------------------


def wait_for_job(orch: Orch, node: str, name: str = "bp") -> str:
    found: list[str] = []

    def has_job() -> bool:
        proc = orch("status", name, "-f", "json", check=None)
        if proc.returncode != 0:
            return False
        for instance in json.loads(proc.stdout)["instances"]:
            if instance["node"] == node and instance["attributes"].get("job_id"):
                found.append(str(instance["attributes"]["job_id"]))
                return True
        return False

    wait_until(has_job, f"{node}'s job id")
    return found[0]


def test_a_memory_that_is_not_a_size_is_a_clear_error_not_a_crash() -> None:
    """The parser's error type is not a ValueError: the job script caught nothing and the
    engine reported an internal error. Sizes now come from orch.units (a ValueError)."""
    from orch.executors.slurm_script import ScriptError, _megabytes

    assert _megabytes("2 GB") == 2000
    with pytest.raises(ScriptError, match="memory 'lots' is not a size like '2 GB'"):
        _megabytes("lots")
    with pytest.raises(ScriptError, match="memory '3 parsecs' is not a size"):
        _megabytes("3 parsecs")
