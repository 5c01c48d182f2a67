"""The HPC examples shipped in ``blueprints/`` deploy for real on the loopback sites: two Slurm
clusters (own ports, munge keys and state) and a Son of Grid Engine cluster, each behind its own
sshd, reached as their unprivileged user with a credential token, as a newcomer's sites.yaml
would describe them. The same blueprints run unchanged on a Slurm site and on an SGE site."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sites.cli import Orch, authorized_keys_file, site_yaml
from sites.fixtures import SlurmSite
from sites.hpc import HpcSite, copy_blueprint
from sites.slurm import PATH


@pytest.fixture
def two_site_credential(
    orch: Orch, credential: str, second_slurm_site: SlurmSite
) -> Iterator[str]:
    """The credential, accepted by the second site's user too."""
    public = orch("credentials", "public-key", credential).stdout
    path = authorized_keys_file(second_slurm_site.ssh, second_slurm_site.ssh.unprivileged_user)
    before = path.read_text() if path.exists() else ""
    path.write_text(before + public)
    try:
        yield credential
    finally:
        path.write_text(before)


def two_sites(orch: Orch, first: SlurmSite, second: SlurmSite, token: str) -> None:
    text = "sites:\n" + site_yaml(first, token, "hpc1") + site_yaml(second, token, "hpc2")
    orch.write("sites.yaml", text)


def test_two_sites_run_one_workflow_concurrently(
    orch: Orch, slurm_site: SlurmSite, second_slurm_site: SlurmSite, two_site_credential: str
) -> None:
    two_sites(orch, slurm_site, second_slurm_site, two_site_credential)
    blueprint = copy_blueprint(orch, "two-sites")
    orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=180)
    outputs = json.loads(orch("outputs", "two-sites", "-f", "json").stdout)
    results = blueprint.parent / "results"
    ranks = sorted(p.read_text() for p in (results / "simulation").glob("rank-*.txt"))
    assert [re.sub(r" on .*", "", r.strip()) for r in ranks] == ["rank 0 of 2", "rank 1 of 2"]
    summary = (results / "analysis" / "summary.txt").read_text().splitlines()
    assert summary[-1] == "sample 3: mean 21"
    # each job ran on its own cluster, at the same time
    first = slurm_site.cluster.run("scontrol", "-o", "show", "job", str(outputs["simulation_job"]))
    second = second_slurm_site.cluster.run(
        "scontrol", "-o", "show", "job", str(outputs["analysis_job"])
    )
    assert "JobName=simulation" in first.stdout and "JobName=analysis" in second.stdout
    assert overlap(first.stdout, second.stdout)


def overlap(first: str, second: str) -> bool:
    """Whether two jobs' [SubmitTime, EndTime] spans overlap (both were in Slurm at once)."""
    def span(text: str) -> tuple[str, str]:
        fields = dict(re.findall(r"(\w+)=(\S+)", text))
        return fields["SubmitTime"], fields["EndTime"]

    (a_start, a_end), (b_start, b_end) = span(first), span(second)
    return a_start <= b_end and b_start <= a_end


def site_with(
    orch: Orch, site: SlurmSite, token: str, *tool_dirs: Path, **settings: object
) -> None:
    """sites.yaml for one site whose sessions find ``tool_dirs`` (apptainer, enqueue_compss)."""
    path = ":".join([*map(str, tool_dirs), PATH])
    environment = {"PATH": path, "SLURM_CONF": str(site.cluster.conf)}
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        site, token, "hpc1", partition="debug", environment=environment, **settings
    ))  # fmt: skip


def test_eflows4hpc_minimal_workflow(
    orch: Orch, hpc_site: HpcSite, hpc_credential: str, compss_bin: Path, apptainer: Path
) -> None:
    """Image built with Apptainer and placed on the site, data and code staged in, the
    PyCOMPSs workflow launched with the stand-in enqueue_compss (the COMPSs runtime cannot be
    installed here: it runs the application with plain python in a real Slurm or SGE job),
    results staged out; a second deploy builds, sends and submits nothing new. The same
    blueprint on a Slurm site and on an SGE site."""
    orch.write("sites.yaml", "sites:\n" + hpc_site.yaml(
        hpc_credential, "hpc1", compss_bin, apptainer.parent))  # fmt: skip
    blueprint = copy_blueprint(orch, "eflows4hpc-minimal")
    orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=300)
    counts = (blueprint.parent / "results" / "counts.txt").read_text().splitlines()
    assert counts[:3] == ["the 4", "dog 2", "fox 2"]
    outputs = json.loads(orch("outputs", "eflows4hpc-minimal", "-f", "json").stdout)
    image = outputs["image"]
    assert re.fullmatch(r"/home/orchtest/orch-work/images/wordcount-[0-9a-f]{12}\.sif", image)
    work = Path(attributes_of(orch, "eflows4hpc-minimal", "wordcount")["work_dir"])
    calls = (work / "enqueue_compss.calls").read_text().splitlines()
    call = json.loads(calls[-1])  # the site's home outlives test runs
    assert call["options"]["container_image"] == image
    assert call["options"]["num_nodes"] == "1" and call["options"]["exec_time"] == "10"
    job = attributes_of(orch, "eflows4hpc-minimal", "wordcount")["job_id"]
    assert hpc_site.job_name(str(job)) == "wordcount"  # it ran on the site's own scheduler

    again = orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=300)
    assert "nothing to do" in again.stderr or "already done" in again.stderr
    image_attributes = attributes_of(orch, "eflows4hpc-minimal", "image")
    assert image_attributes["image_path"] == image


def test_mpi_job_in_an_apptainer_image(
    orch: Orch, hpc_site: HpcSite, hpc_credential: str, apptainer: Path
) -> None:
    """Two ranks, each in the image, started by the site's own launcher (srun on Slurm,
    mpirun in SGE's parallel environment), each told its rank in ORCH_RANK."""
    orch.write("sites.yaml", "sites:\n" + hpc_site.yaml(hpc_credential, "hpc1",
                                                        apptainer.parent))  # fmt: skip
    blueprint = copy_blueprint(orch, "mpi-apptainer")
    orch("deploy", str(blueprint), "--poll-interval", "0.5", "-i", "ranks=2", timeout=120)
    outputs = json.loads(orch("outputs", "mpi-apptainer", "-f", "json").stdout)
    lines = sorted(Path(outputs["output"]).read_text().splitlines())
    assert [line.split(" in ")[0] for line in lines] == [f"rank {i} of 2" for i in range(2)]
    suffix = ".sbatch" if hpc_site.scheduler == "slurm" else ".qsub"
    script = (Path(outputs["output"]).parent / f"ranks{suffix}").read_text()
    launcher = "srun" if hpc_site.scheduler == "slurm" else 'mpirun -np "$NSLOTS"'
    assert f"{launcher} /bin/sh -c" in script
    assert "orch-rank apptainer exec --bind /tmp /home/orchtest/orch-work/images/ranks-" in script
    assert hpc_site.job_name(str(outputs["job_id"])) == "ranks"


def test_two_sites_one_slurm_one_sge(
    orch: Orch, slurm_site: SlurmSite, sge_site: Any, credential: str
) -> None:
    """The two-sites blueprint with its MPI simulation on an SGE site and its analysis on a
    Slurm site: nothing in the blueprint names a scheduler."""
    sge = HpcSite("sge", sge_site.ssh, sge_site, {k: v for k, v in sge_site.cluster.env.items()
                                                    if k != "PATH"},
                  sge_site.cluster.env["PATH"])  # fmt: skip
    public = orch("credentials", "public-key", credential).stdout
    keys = authorized_keys_file(sge_site.ssh, sge_site.ssh.unprivileged_user)
    before = keys.read_text() if keys.exists() else ""
    keys.write_text(before + public)
    try:
        slurm = site_yaml(slurm_site, credential, "hpc2", partition="debug",
                          environment={"SLURM_CONF": str(slurm_site.cluster.conf)})
        orch.write("sites.yaml", "sites:\n" + sge.yaml(credential, "hpc1") + slurm)
        blueprint = copy_blueprint(orch, "two-sites")
        orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=180)
    finally:
        keys.write_text(before)
    results = blueprint.parent / "results"
    ranks = sorted(p.read_text() for p in (results / "simulation").glob("rank-*.txt"))
    assert [re.sub(r" on .*", "", r.strip()) for r in ranks] == ["rank 0 of 2", "rank 1 of 2"]
    assert (results / "analysis" / "summary.txt").read_text().splitlines()[-1] == (
        "sample 3: mean 21")
    outputs = json.loads(orch("outputs", "two-sites", "-f", "json").stdout)
    assert sge.job_name(str(outputs["simulation_job"])) == "simulation"
    shown = slurm_site.cluster.run("scontrol", "-o", "show", "job", str(outputs["analysis_job"]))
    assert "JobName=analysis" in shown.stdout


def attributes_of(orch: Orch, deployment: str, node: str) -> dict:
    data = json.loads(orch("status", deployment, "-f", "json").stdout)
    [instance] = [i for i in data["instances"] if i["node"] == node]
    return instance["attributes"]
