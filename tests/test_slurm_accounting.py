"""Slurm with accounting (slurmdbd + MariaDB of the test's own, ``SlurmCluster(accounting=True)``):
a job that ended while orch was not watching and that Slurm has already forgotten (squeue no
longer lists it) is reported from ``sacct``, with its state, exit code and node (issue 14).

orch is killed (``kill -9``) while the jobs run (they wait for a file the test then creates);
the test waits until squeue has forgotten them and sacct answers, deletes the exit files the
batch scripts wrote (orch's fallback when there is no accounting), then resumes the deployment.
Only sacct can then say how the jobs ended, and only sacct (or squeue) gives the node list, so a
COMPLETED/FAILED with the node is sacct's answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import Orch, authorized_keys_file, site_yaml, wait_until
from sites.fixtures import SlurmSite, _slurm_site
from sites.slurm import SlurmCluster, missing_binaries

NAME = "hpcacct"
MIN_JOB_AGE = 2  # seconds a finished job stays in squeue (slurmctld purges every few s more)


@pytest.fixture(scope="session")
def slurm_accounting_cluster() -> Iterator[SlurmCluster]:
    """A single-node cluster with slurmdbd and MariaDB, and a short MinJobAge."""
    missing = missing_binaries(accounting=True)
    if missing:
        # not a skip: this test is what exercises orch's sacct path for real
        pytest.fail(f"Slurm accounting not installed (missing {', '.join(missing)}): apt-get "
                    "install slurmctld slurmd slurm-client munge slurmdbd mariadb-server "
                    "(tests/run.sh does it)")  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("Slurm tests need root: slurmd runs jobs as other users "
                    "(run tests/run.sh as root, e.g. in a container)")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix=f"orch-slurm-{NAME}-"))
    cluster = SlurmCluster(root, NAME, min_job_age=MIN_JOB_AGE, accounting=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_accounting_site(slurm_accounting_cluster: SlurmCluster) -> Iterator[SlurmSite]:
    """The login node of ``slurm_accounting_cluster``."""
    yield from _slurm_site(slurm_accounting_cluster)


@pytest.fixture
def site(orch: Orch, slurm_accounting_site: SlurmSite) -> Iterator[SlurmSite]:
    token = orch("credentials", "generate", "--comment", "orch accounting test").stdout.strip()
    public = orch("credentials", "public-key", token).stdout
    ssh = slurm_accounting_site.ssh
    path = authorized_keys_file(ssh, ssh.unprivileged_user)
    before = path.read_text()
    path.write_text(before + public)
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_accounting_site, token, name=NAME,
                                                    partition="debug"))  # fmt: skip
    try:
        yield slurm_accounting_site
    finally:
        path.write_text(before)


def blueprint(go: Path) -> str:
    # the jobs end only once the test has killed orch (they wait for the file ``go``)
    wait = f"for i in $(seq 300); do [ -e {go} ] && break; sleep 0.2; done"
    return f"""
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{site: {NAME}}}
    fine:
      type: orch.nodes.SlurmJob
      properties: {{script: "{wait}; echo fine"}}
      requirements: [{{host: login}}]
    broken:
      type: orch.nodes.SlurmJob
      properties: {{script: "{wait}; exit 3"}}
      requirements: [{{host: login}}]
"""


@pytest.fixture
def go() -> Iterator[Path]:
    """Where the trigger file goes: a folder the site's user can read (pytest's are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="orch-acct-go-"))
    folder.chmod(0o755)
    try:
        yield folder / "go"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def instances(orch: Orch) -> dict[str, dict]:
    proc = orch("status", "bp", "-f", "json", check=None)
    if proc.returncode != 0:
        return {}
    return {i["node"]: i["attributes"] for i in json.loads(proc.stdout)["instances"]}


def sacct(cluster: SlurmCluster, job_id: str, fields: str) -> str:
    return cluster.run("sacct", "-n", "-P", "-X", "-j", job_id, "-o", fields, check=False).stdout


def test_a_job_slurm_forgot_is_reported_from_sacct(orch: Orch, site: SlurmSite, go: Path) -> None:
    cluster = site.cluster
    orch.write("bp.yaml", blueprint(go))
    proc = orch.start("deploy", "bp.yaml", "--poll-interval", "0.5")
    try:
        wait_until(
            lambda: all(instances(orch).get(n, {}).get("job_id") for n in ("fine", "broken")),
            "both jobs submitted",
            30,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ids = {n: str(instances(orch)[n]["job_id"]) for n in ("fine", "broken")}
    go.touch()

    def forgotten_and_accounted() -> bool:
        listed = cluster.run("squeue", "-h", "-t", "all", "-o", "%A", check=False).stdout.split()
        return all(
            job_id not in listed
            and sacct(cluster, job_id, "State").strip() in ("COMPLETED", "FAILED")
            for job_id in ids.values()
        )

    wait_until(forgotten_and_accounted, "squeue to forget the jobs and sacct to report them", 40,
               every=0.5)  # fmt: skip
    # without the exit files only sacct can tell how the jobs ended
    for name, job_id in ids.items():
        work_dir = sacct(cluster, job_id, "WorkDir").strip()
        exits = list(Path(work_dir).glob(f"*-{job_id}.exit"))
        assert exits, f"{name}: no exit file in {work_dir}"
        for path in exits:
            path.unlink()

    resumed = orch("deploy", "bp.yaml", "--poll-interval", "0.5", check=None, timeout=60)
    assert resumed.returncode != 0, resumed.stderr  # the broken job fails the deployment
    assert "Traceback" not in resumed.stderr
    attrs = instances(orch)
    fine, broken = attrs["fine"], attrs["broken"]
    assert (fine["job_status"], fine["exit_code"]) == ("COMPLETED", 0), fine
    assert (broken["job_status"], broken["exit_code"]) == ("FAILED", 3), broken
    # the node list comes from sacct (an exit file only gives the code)
    assert fine["node_list"] == broken["node_list"] == cluster.node
    assert f"job {ids['broken']}" in resumed.stderr and "exit code 3" in resumed.stderr
