"""The HPC examples shipped in ``blueprints/`` deploy for real on the loopback sites: two Slurm
clusters (own ports, munge keys and state) behind their own sshd, reached as their unprivileged
user with a credential token, as a newcomer's sites.yaml would describe them."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import Orch, authorized_keys_file, site_yaml
from sites.fixtures import SlurmSite
from sites.slurm import PATH

REPO = Path(__file__).resolve().parents[1]


def copy_blueprint(orch: Orch, name: str) -> Path:
    target = orch.root / name
    shutil.copytree(REPO / "blueprints" / name, target)
    return target / "blueprint.yaml"


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
    orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path, apptainer: Path
) -> None:
    """Image built with Apptainer and placed on the site, data and code staged in, the
    PyCOMPSs workflow launched with the stand-in enqueue_compss (the COMPSs runtime cannot be
    installed here: it runs the application with plain python in a real Slurm job), results
    staged out; a second deploy builds, sends and submits nothing new."""
    site_with(orch, slurm_site, credential, compss_bin, apptainer.parent)
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

    again = orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=300)
    assert "nothing to do" in again.stderr or "already done" in again.stderr
    image_attributes = attributes_of(orch, "eflows4hpc-minimal", "image")
    assert image_attributes["image_path"] == image


def test_mpi_job_in_an_apptainer_image(
    orch: Orch, slurm_site: SlurmSite, credential: str, apptainer: Path
) -> None:
    site_with(orch, slurm_site, credential, apptainer.parent)
    blueprint = copy_blueprint(orch, "mpi-apptainer")
    orch("deploy", str(blueprint), "--poll-interval", "0.5", "-i", "ranks=2", timeout=120)
    outputs = json.loads(orch("outputs", "mpi-apptainer", "-f", "json").stdout)
    lines = sorted(Path(outputs["output"]).read_text().splitlines())
    assert [line.split(" in ")[0] for line in lines] == [f"rank {i} of 2" for i in range(2)]
    script = Path(outputs["output"]).parent / "ranks.sbatch"
    assert "srun apptainer exec --bind /tmp /home/orchtest/orch-work/images/ranks-" in (
        script.read_text()
    )


def attributes_of(orch: Orch, deployment: str, node: str) -> dict:
    data = json.loads(orch("status", deployment, "-f", "json").stdout)
    [instance] = [i for i in data["instances"] if i["node"] == node]
    return instance["attributes"]
