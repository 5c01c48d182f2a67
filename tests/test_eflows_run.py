"""eFlows4HPC topologies run end to end with orch alone, unchanged: ``orch deploy`` builds the
image from the workflow registry and places it on the site, ``orch run exec_job`` stages the data
in, runs the PyCOMPSs job through Slurm and the result is checked where it landed.

Real parts: the loopback Slurm site behind sshd, Apptainer building the image, the site user's
unprivileged ``apptainer exec``. Stand-ins, for what cannot be installed here: ``enqueue_compss``
(tests/sites/pycompss: it reads the application from the image and runs it with the site's
python) and a B2SHARE server (tests/sites/web.py, following B2SHARE's REST API)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sites.cli import Orch
from sites.eflows import SECRETS, set_secrets
from sites.fixtures import SlurmSite
from sites.web import Files, b2share_record

ROOT = Path(__file__).resolve().parent.parent / "blueprints" / "eflows4hpc"


@pytest.fixture(params=["stand-in module", "lmod", "sge"])
def any_site(request: pytest.FixtureRequest) -> object:
    """The Slurm site with the tests' stand-in ``module``, and with the real Lmod (the job's
    modules are what put enqueue_compss and apptainer on its PATH); then the SGE site."""
    fixture = {"stand-in module": "site", "lmod": "lmod_site"}.get(request.param)
    if fixture is None:  # eflows_site's SGE run, picked by its parameter
        return request.getfixturevalue("sge_eflows_site")
    return request.getfixturevalue(fixture)


def test_the_minimal_workflow_deploys_runs_twice_and_undeploys(
    orch: Orch, any_site: SlurmSite, registry: Path, web: tuple[str, Files]
) -> None:
    base, files = web
    text = "one two three four five\nsix seven\n"
    b2share_record(files, base, "rec-42", {"data.txt": text.encode()})
    set_secrets(orch)
    shutil.copy(ROOT / "minimal" / "topology.yml", orch.root / "topology.yml")
    inputs = ["-i", "user_id=orchtest", "-i", "vault_id=0123456789abcdef"]

    deployed = orch("deploy", "topology.yml", *inputs, "--registry", str(registry),
                    "--poll-interval", "0.5", timeout=300)  # fmt: skip
    status = json.loads(orch("status", "minimal_workflow", "-f", "json").stdout)
    by_node = {i["node"]: i for i in status["instances"]}
    image = by_node["DLSDAGImageTransfer"]["attributes"]["image_file_path"]
    assert image.startswith("/home/orchtest/images/") and Path(image).is_file()
    assert "job_id" not in by_node["PyCOMPSJob"]["attributes"], "deploy submitted the job"
    for secret in (value for _, _, value in SECRETS):
        assert secret not in deployed.stdout + deployed.stderr

    target = f"/home/orchtest/staged-{os.getpid()}-{time.monotonic_ns()}"  # the site's home
    run = ["run", "exec_job", "-n", "minimal_workflow", "-i", "oid=rec-42",
           "-i", f"target_path={target}", "-i", f"staged_in_data_path={target}",
           "--poll-interval", "0.5"]  # fmt: skip
    orch(*run, timeout=300)
    assert Path(target, "data.txt").read_text() == text
    status = json.loads(orch("status", "minimal_workflow", "-f", "json").stdout)
    job = {i["node"]: i for i in status["instances"]}["PyCOMPSJob"]["attributes"]
    assert job["job_status"] == "COMPLETED"
    output = Path(job["output"]).read_text()
    assert "wordcount: 7 words" in output
    calls = [json.loads(line) for line in
             (Path(job["work_dir"]) / "enqueue_compss.calls").read_text().splitlines()]
    assert calls[-1]["options"]["container_image"] == image
    assert calls[-1]["args"] == [f"{target}/data.txt"]
    first_job = job["job_id"]

    orch(*run, timeout=300)  # again: a new execution, the data already there
    status = json.loads(orch("status", "minimal_workflow", "-f", "json").stdout)
    job = {i["node"]: i for i in status["instances"]}["PyCOMPSJob"]["attributes"]
    assert job["job_id"] != first_job and job["job_status"] == "COMPLETED"
    assert files.hits.get("/api/files/bucket-rec-42/data.txt") == 1, "transferred again"

    orch("undeploy", "minimal_workflow", timeout=300)
    listed = json.loads(orch("list", "-f", "json").stdout)
    assert [d["status"] for d in listed if d["name"] == "minimal_workflow"] == ["undeployed"]
    assert Path(target, "data.txt").is_file()  # staged data is the user's: undeploy leaves it
    shutil.rmtree(target)
