"""Co-scheduled jobs (``orch.groups.CoScheduled``) on a real three-node loopback Slurm site: the
members start together as ONE heterogeneous job, one component each, and reach each other at
the endpoints orch gave them (``<NODE>_ENDPOINT``); each member is its own job in orch's
records, with its host and endpoint as attributes. Bad groups are refused before anything is
submitted, and a heterogeneous job the site rejects fails with the site's own message."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml, write_slurm_sites
from sites.fixtures import SlurmSite
from sites.hpc import HpcSite, authorize
from sites.serve import free_port
from sites.slurm import PATH

SIMULATOR = '''
"""A toy simulator: serves its state on ORCH_PORT; with a peer, sends it its state each step
and records what the peer answers."""
import os, socket, sys, time

def ask(endpoint, message, tries=100):
    host, port = endpoint.rsplit(":", 1)
    for _ in range(tries):
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(message.encode() + b"\\n")
                return conn.makefile().readline().strip()
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no answer from {endpoint}")

name, serves = sys.argv[1], int(sys.argv[2])
server = socket.create_server(("127.0.0.1", int(os.environ["ORCH_PORT"])))
peer = sys.argv[3] if len(sys.argv) > 3 else ""
if peer:
    for step in range(3):
        print(f"{name} step {step}:", ask(os.environ[peer + "_ENDPOINT"], f"{name} step {step}"),
              flush=True)
for _ in range(serves):
    conn, _ = server.accept()
    with conn:
        line = conn.makefile().readline().strip()
        conn.sendall(f"{name} at {os.environ['ORCH_HOST']}:{os.environ['ORCH_PORT']} got "
                     f"'{line}'\\n".encode())
print(f"{name} done", flush=True)
'''

VIEWER = '''
"""The 'visualisation': asks both simulators for their state."""
import os, socket, time
for peer in ("SIM_A", "SIM_B"):
    host, port = os.environ[peer + "_ENDPOINT"].rsplit(":", 1)
    for _ in range(100):
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(b"viewer\\n")
                print("viewer saw:", conn.makefile().readline().strip(), flush=True)
                break
        except OSError:
            time.sleep(0.1)
'''

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{ site: hpc3 }}
    other_login:
      type: orch.nodes.Site
      properties: {{ site: {viewer_site} }}
    sim_a:
      type: orch.nodes.SlurmJob
      properties:
        port: {port}
        command: python3 {apps}/simulator.py sim_a 4
        poll_interval: 0.5 s
      requirements:
        - host: login
    sim_b:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/simulator.py sim_b 1 SIM_A
        poll_interval: 0.5 s{sim_b_extra}
      requirements:
        - host: login
        - connects_to: sim_a
    viewer:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/viewer.py
        poll_interval: 0.5 s
      requirements:
        - host: {viewer_host}
        - connects_to: sim_a
        - connects_to: sim_b
  groups:
    coupled:
      type: orch.groups.CoScheduled
      members: [sim_a, sim_b, viewer]
"""


def _setup(orch: Orch, site: SlurmSite, credential: str, shared_dir: Path, *,
           viewer_site: str = "hpc3", sim_b_extra: str = "") -> int:  # fmt: skip
    environment = {"SLURM_CONF": str(site.cluster.conf), "PATH": PATH}
    entry = site_yaml(site, credential, "hpc3", partition="debug", environment=environment)
    other = site_yaml(site, credential, "hpc4", partition="long", environment=environment)
    orch.write("sites.yaml", "sites:\n" + entry + other)
    (shared_dir / "simulator.py").write_text(textwrap.dedent(SIMULATOR))
    (shared_dir / "viewer.py").write_text(textwrap.dedent(VIEWER))
    port = free_port()
    orch.write("coupled.yaml", BLUEPRINT.format(
        apps=shared_dir, port=port, viewer_site=viewer_site, sim_b_extra=sim_b_extra,
        viewer_host="login" if viewer_site == "hpc3" else "other_login"))  # fmt: skip
    return port


def _status(orch: Orch, name: str) -> dict:
    return json.loads(orch("status", name, "-f", "json").stdout)


def test_coupled_applications_start_as_one_heterogeneous_job_and_reach_each_other(
    orch: Orch, multi_node_slurm_site: SlurmSite, credential_hpc3: str, shared_dir: Path
) -> None:
    site = multi_node_slurm_site
    port = _setup(orch, site, credential_hpc3, shared_dir)
    orch("deploy", "coupled.yaml", "-n", "coupled", "--poll-interval", "0.5", timeout=180)
    status = _status(orch, "coupled")
    jobs = {job["instance"]: job for job in status["jobs"]}
    assert set(jobs) == {"sim_a/0", "sim_b/0", "viewer/0"}
    assert all(job["status"] == "completed" for job in jobs.values()), jobs
    # one heterogeneous job: each member is one of its components, on a node of its own
    shown = site.cluster.run("squeue", "-h", "-t", "all", "-o", "%A %i %N").stdout.split("\n")
    components = {line.split()[0]: line.split()[1:] for line in shown if line.strip()}
    ids = [jobs[n]["id"] for n in ("sim_a/0", "sim_b/0", "viewer/0")]
    leader = components[ids[0]][0].split("+")[0]
    assert [components[i][0] for i in ids] == [f"{leader}+0", f"{leader}+1", f"{leader}+2"]
    assert len({components[i][1] for i in ids}) == 3
    attributes = {i["id"]: i["attributes"] for i in status["instances"]}
    assert attributes["sim_a/0"]["endpoint"] == f"127.0.0.1:{port}"
    assert attributes["sim_a/0"]["host"] == "127.0.0.1"
    sim_b_port = int(attributes["sim_b/0"]["endpoint"].rsplit(":", 1)[1])
    assert 30000 <= sim_b_port < 50000
    logs = orch("logs", "coupled").stdout
    for step in range(3):
        assert f"sim_b step {step}: sim_a at 127.0.0.1:{port} got 'sim_b step {step}'" in logs
    assert f"viewer saw: sim_a at 127.0.0.1:{port} got 'viewer'" in logs
    assert f"viewer saw: sim_b at 127.0.0.1:{sim_b_port} got 'viewer'" in logs
    assert "sim_a done" in logs and "sim_b done" in logs
    # run again: a new heterogeneous job, members found again, nothing left queued
    orch("run", "run", "-n", "coupled", "--poll-interval", "0.5", timeout=180)
    again = {job["id"] for job in _status(orch, "coupled")["jobs"]}
    assert len(again) == 6
    orch("undeploy", "coupled", timeout=120)


def test_a_group_across_sites_is_refused_before_anything_is_submitted(
    orch: Orch, multi_node_slurm_site: SlurmSite, credential_hpc3: str, shared_dir: Path
) -> None:
    site = multi_node_slurm_site
    _setup(orch, site, credential_hpc3, shared_dir, viewer_site="hpc4")
    before = site.cluster.run("squeue", "-h", "-t", "all", "-o", "%A").stdout.split()
    failed = orch("deploy", "coupled.yaml", "-n", "split", "--poll-interval", "0.5", check=None,
                  timeout=120)  # fmt: skip
    assert failed.returncode != 0
    assert ("group coupled: its members must run on one site, to start together in one job, "
            "but sim_a on hpc3, sim_b on hpc3, viewer on hpc4") in failed.stderr, failed.stderr
    assert site.cluster.run("squeue", "-h", "-t", "all", "-o", "%A").stdout.split() == before
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize(("extra", "said"), [
    # sbatch refuses the job: its own message
    ("partition: nope", ["submitting group coupled (a heterogeneous job of sim_a, sim_b, "
                         "viewer)", "Invalid partition name specified"]),
    # Slurm takes it, but one component can never start: the whole group's job goes
    ("cpus_per_task: 64", ["can never start as asked: Slurm says PartitionConfig"]),
], ids=["rejected", "never-starts"])  # fmt: skip
def test_a_group_the_site_cannot_run_fails_with_its_reason_and_leaves_nothing(
    orch: Orch, multi_node_slurm_site: SlurmSite, credential_hpc3: str, shared_dir: Path,
    extra: str, said: list[str],
) -> None:  # fmt: skip
    site = multi_node_slurm_site
    _setup(orch, site, credential_hpc3, shared_dir, sim_b_extra="\n        " + extra)
    failed = orch("deploy", "coupled.yaml", "-n", "bad", "--poll-interval", "0.5",
                  check=None, timeout=120)  # fmt: skip
    assert failed.returncode != 0
    for text in said:
        assert text in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert site.cluster.job_ids() == []  # nothing of the group is left waiting


@pytest.fixture
def credential_hpc3(orch: Orch, multi_node_slurm_site: SlurmSite) -> Iterator[str]:
    """A token the three-node site's login accepts, for this test only."""
    yield from authorize(orch, multi_node_slurm_site.ssh)


STEPS_BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{ site: hpc1 }}
    sim_a:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/simulator.py sim_a 3
        poll_interval: 0.5 s
      requirements:
        - host: login
    sim_b:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/simulator.py sim_b 0 SIM_A
        poll_interval: 0.5 s
      requirements:
        - host: login
  groups:
    pair:
      type: orch.groups.CoScheduled
      properties: {{ mode: steps }}
      members: [sim_a, sim_b]
"""


def test_mode_steps_runs_the_members_as_steps_of_one_job_on_one_node(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    """For a site that refuses heterogeneous jobs: the one-node loopback site, where members
    run side by side as steps 0 and 1 of one job and still reach each other."""
    write_slurm_sites(orch, slurm_site, credential)
    (shared_dir / "simulator.py").write_text(textwrap.dedent(SIMULATOR))
    orch.write("pair.yaml", STEPS_BLUEPRINT.format(apps=shared_dir))
    owner = _pair_ran_as_one_job(orch, "pair")
    deadline = time.monotonic() + 20  # the members' ends are seen before the job's own
    while True:
        shown = slurm_site.cluster.run("scontrol", "-o", "show", "job", owner).stdout
        if "JobState=COMPLETED" in shown or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "JobState=COMPLETED" in shown and "NumNodes=1" in shown, shown
    orch("undeploy", "pair", timeout=120)


def test_on_an_sge_site_the_group_is_one_parallel_environment_job(
    orch: Orch, sge_hpc_site: HpcSite, sge_credential: str, shared_dir: Path
) -> None:
    """SGE has neither heterogeneous jobs nor steps: the group is one job of its slots summed
    in the parallel environment, the members side by side on its host, member K watched as
    J.K; they reach each other as on Slurm."""
    orch.write("sites.yaml", "sites:\n" + sge_hpc_site.yaml(sge_credential, "hpc1"))
    (shared_dir / "simulator.py").write_text(textwrap.dedent(SIMULATOR))
    orch.write("pair.yaml", STEPS_BLUEPRINT.format(apps=shared_dir).replace(
        "      properties: { mode: steps }\n", ""))  # fmt: skip
    owner = _pair_ran_as_one_job(orch, "pe")
    deadline = time.monotonic() + 30  # SGE writes its accounting a moment after the end
    while True:
        accounted = sge_hpc_site.site.cluster.run("qacct", "-j", owner, check=False).stdout
        if "granted_pe" in accounted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "granted_pe   mpi" in accounted and "slots        2" in accounted, accounted
    orch("undeploy", "pe", timeout=120)


def _pair_ran_as_one_job(orch: Orch, name: str) -> str:
    """Deploys pair.yaml as ``name``: sim_a and sim_b are J.0 and J.1 of one job J, both
    completed, and sim_b reached sim_a at sim_a's endpoint attribute; returns J."""
    orch("deploy", "pair.yaml", "-n", name, "--poll-interval", "0.5", timeout=180)
    status = _status(orch, name)
    jobs = {job["instance"]: job for job in status["jobs"]}
    owner = jobs["sim_a/0"]["id"].split(".")[0]
    assert (jobs["sim_a/0"]["id"], jobs["sim_b/0"]["id"]) == (f"{owner}.0", f"{owner}.1")
    assert all(job["status"] == "completed" for job in jobs.values()), jobs
    endpoint = {i["id"]: i["attributes"].get("endpoint") for i in status["instances"]}
    logs = orch("logs", name).stdout
    assert f"sim_b step 2: sim_a at {endpoint['sim_a/0']} got 'sim_b step 2'" in logs, logs
    return owner
