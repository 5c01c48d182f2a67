"""Held Slurm allocations (``orch.nodes.SlurmAllocation``) on the real loopback Slurm site:
``orch deploy`` acquires one with ``salloc --no-shell``, jobs hosted on it run as its steps
(``srun --jobid``), ``orch run`` runs them again in the same allocation without queueing, and
``orch undeploy`` releases it. An allocation that ends under its steps (its time limit, or an
administrator's scancel) fails them with that reason."""

from __future__ import annotations

import json
import time

from sites.cli import Orch, write_slurm_sites
from sites.fixtures import SlurmSite

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{ site: hpc1 }}
    held:
      type: orch.nodes.SlurmAllocation
      properties: {{ tasks: 1, time: 10 m{extra} }}
      requirements:
        - host: login
    work:
      type: orch.nodes.SlurmJob
      properties:
        poll_interval: 0.5 s
        command: {command}
      requirements:
        - host: held
"""


def _setup(orch: Orch, slurm_site: SlurmSite, credential: str, command: str,
           extra: str = "") -> None:  # fmt: skip
    write_slurm_sites(orch, slurm_site, credential)
    orch.write("alloc.yaml", BLUEPRINT.format(command=json.dumps(command), extra=extra))


def _attributes(orch: Orch, name: str, instance: str) -> dict[str, str]:
    status = json.loads(orch("status", name, "-f", "json").stdout)
    return next(i["attributes"] for i in status["instances"] if i["id"] == instance)


def _jobs(orch: Orch, name: str) -> list[dict[str, str]]:
    shown = orch("status", name, "-f", "json", check=None)
    return json.loads(shown.stdout)["jobs"] if shown.returncode == 0 else []


def _squeue(slurm_site: SlurmSite) -> list[str]:
    shown = slurm_site.cluster.run("squeue", "-h", "-o", "%i %j %T").stdout
    return [line for line in shown.splitlines() if line.strip()]


def test_an_allocation_is_held_across_runs_and_released_at_undeploy(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    _setup(orch, slurm_site, credential, "sh -c 'echo step $SLURM_JOB_ID.$SLURM_STEP_ID "
           "rank $ORCH_RANK of $ORCH_RANKS'")  # fmt: skip
    deployed = orch("deploy", "alloc.yaml", "-n", "staged", "--poll-interval", "0.5",
                    timeout=120)  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    held = _attributes(orch, "staged", "held/0")
    allocation = held["allocation_id"]
    assert allocation.isdigit()
    assert held["node_list"] == slurm_site.cluster.node
    assert held["time_limit"] == "10:00"
    assert held["ends_at"].endswith("Z")
    first = _jobs(orch, "staged")
    assert [job["id"] for job in first] == [f"{allocation}.0"]
    assert first[0]["status"] == "completed"
    logs = orch("logs", "staged", check=None).stdout
    assert f"step {allocation}.0 rank 0 of 1" in logs
    # run again: a new step of the same allocation, nothing queued
    began = time.monotonic()
    again = orch("run", "run", "-n", "staged", "--poll-interval", "0.5", timeout=120)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - began < 15
    ids = [job["id"] for job in _jobs(orch, "staged")]
    assert f"{allocation}.1" in ids, ids
    assert _squeue(slurm_site) == [f"{allocation} held RUNNING"]
    # the allocation shows, with the time it has left
    text = orch("status", "staged").stdout
    assert f"allocation {allocation}" in text and "left" in text, text
    undeployed = orch("undeploy", "staged", timeout=120)
    assert undeployed.returncode == 0, undeployed.stderr
    assert _squeue(slurm_site) == []


def test_an_allocation_that_ends_fails_its_running_step_with_the_reason(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    _setup(orch, slurm_site, credential, "sleep 60")
    deploy = orch.start("deploy", "alloc.yaml", "-n", "expiring", "--poll-interval", "0.5")
    try:
        deadline = time.monotonic() + 60
        allocation = ""
        while time.monotonic() < deadline:
            jobs = _jobs(orch, "expiring")
            if jobs and jobs[0]["status"] == "running":
                allocation = jobs[0]["id"].split(".")[0]
                break
            time.sleep(0.3)
        assert allocation, "the step never ran"
        # its time limit comes now (as root: Slurm's own end of an allocation)
        ends = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 2))
        slurm_site.cluster.run("scontrol", "update", f"jobid={allocation}", f"EndTime={ends}")
        deploy.wait(timeout=90)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    stderr = deploy.stderr.read()  # type: ignore[union-attr]
    assert deploy.returncode != 0, stderr
    assert f"its allocation {allocation} ended (TIMEOUT)" in stderr, stderr
    # running it again in the ended allocation fails at once, with Slurm's word and a way out
    again = orch("run", "run", "-n", "expiring", check=4, timeout=60)
    assert (f"allocation {allocation} has ended (Slurm job {allocation} has expired): orch "
            "undeploy, then orch deploy, holds a new one") in again.stderr, again.stderr
    # undeploy still releases what is left (nothing: Slurm ended it) without an error
    assert orch("undeploy", "expiring", timeout=120).returncode == 0
    assert _squeue(slurm_site) == []


def test_a_deploy_killed_while_its_allocation_waits_ends_with_one_allocation(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    """kill -9 of orch while salloc waits for a busy site: the request may still be granted
    after orch is gone; the deploy run again finds that allocation (it carries the create's
    execution id) instead of asking for a second one, and undeploy releases it."""
    _setup(orch, slurm_site, credential, "true")
    cluster = slurm_site.cluster
    filler = cluster.run("sbatch", "--parsable", f"--ntasks={cluster.cpus}", "-p", "debug",
                         "-o", "/dev/null", "--wrap", "sleep 20").stdout.strip()  # fmt: skip
    deploy = orch.start("deploy", "alloc.yaml", "-n", "killed", "--poll-interval", "0.5")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            line.endswith("held PENDING") for line in _squeue(slurm_site)
        ):
            time.sleep(0.2)
        assert any(line.endswith("held PENDING") for line in _squeue(slurm_site))
    finally:
        deploy.kill()
        deploy.wait(timeout=30)
    cluster.run("scancel", filler)
    time.sleep(3)  # the orphaned request, if salloc outlived orch, is granted meanwhile
    orch("deploy", "alloc.yaml", "-n", "killed", "--poll-interval", "0.5", timeout=120)
    held = [line for line in _squeue(slurm_site) if " held " in line]
    assert len(held) == 1 and held[0].endswith("RUNNING"), _squeue(slurm_site)
    orch("undeploy", "killed", timeout=120)
    assert [line for line in _squeue(slurm_site) if " held " in line] == []
