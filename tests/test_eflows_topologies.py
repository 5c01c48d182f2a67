"""More eFlows4HPC topologies, written as Alien4Cloud users write them (blueprints/eflows4hpc/
<name>/topology.yml), run end to end with orch alone, unchanged, as tests/test_eflows_run.py runs
the minimal one: validated, planned (deploy submits nothing; exec_job in the right order),
deployed (the image built from the workflow registry and placed on the site), exec_job run twice
(staged in, run, staged out, the result checked where it landed; each run a new job), undeployed.

Each runs on the loopback Slurm site and again on the loopback SGE site, unchanged.
``parallel``: two execution environments on two sites, two chains run side by side.
``webdav``: WebDAV in, job, WebDAV out (a real WsgiDAV server with basic auth).
``http-model``: a model file over HTTP and a data set from B2SHARE, one job using both.
``two-jobs``: a second PyCOMPSs job reads what the first wrote.
``pycomps-ansible``: the older ``pycomps.ansible`` library's PyCOMPSJob (flat properties).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from orch.executors.base import Artifact, Task
from orch.executors.pycompss import _yorc_properties, enqueue_command
from sites.cli import Orch
from sites.eflows import (
    DAV_PASSWORD,
    DAV_SECRET,
    DAV_USER,
    SECRETS,
    set_secret,
    set_secrets,
)
from sites.fixtures import SlurmSite
from sites.hpc import HpcSite
from sites.web import Files, b2share_record

ROOT = Path(__file__).resolve().parent.parent / "blueprints" / "eflows4hpc"
TOPOLOGIES = {  # folder: (template_name, [(step that runs before, step after)], parallel pairs)
    "two-jobs": (
        "two_jobs_workflow",
        [
            ("DLSDAGStageInData_run", "CountJob_submit"),
            ("CountJob_executed", "ReportJob_submit"),
            ("ReportJob_submit", "ReportJob_executed"),
        ],
        [],
    ),
    "webdav": (
        "webdav_workflow",
        [
            ("DLSDAGWebdavStageInData_run", "PyCOMPSJob_submit"),
            ("PyCOMPSJob_executed", "DLSDAGWebdavStageOutData_submit"),
        ],
        [],
    ),
    "http-model": (
        "http_model_workflow",
        [("HTTP2SSH_run", "PyCOMPSJob_submit"), ("DLSDAGStageInData_run", "PyCOMPSJob_submit")],
        [("HTTP2SSH_submit", "DLSDAGStageInData_submit")],
    ),
    "parallel": (
        "parallel_workflow",
        [
            ("DLSDAGStageInData1_run", "PyCOMPSJob1_submit"),
            ("DLSDAGStageInData2_run", "PyCOMPSJob2_submit"),
        ],
        [
            ("DLSDAGStageInData1_submit", "DLSDAGStageInData2_submit"),
            ("PyCOMPSJob1_submit", "PyCOMPSJob2_submit"),
            ("PyCOMPSJob1_executed", "PyCOMPSJob2_executed"),
        ],
    ),
    "pycomps-ansible": (
        "pycomps_ansible_workflow",
        [("DLSDAGStageInData_run", "PyCOMPSJob_submit"), ("PyCOMPSJob_run", "PyCOMPSJob_executed")],
        [],
    ),
}
USER = ["-i", "user_id=orchtest", "-i", "vault_id=0123456789abcdef"]
TEXT = "one two three four five\nsix seven\n"


# -- what every topology shares -------------------------------------------------------------


def plan(orch: Orch, topology: Path, *args: str) -> dict[str, Any]:
    proc = orch("plan", *args, str(topology), *USER, "-f", "json")
    return json.loads(proc.stdout)


def closure(steps: list[dict[str, Any]]) -> dict[str, set[str]]:
    """label -> the labels of every step it waits for, directly or not."""
    label = {s["id"]: s.get("label") or s["id"] for s in steps}
    deps = {s["id"]: set(s.get("deps") or ()) for s in steps}
    before: dict[str, set[str]] = {}

    def walk(step: str) -> set[str]:
        if step not in before:
            before[step] = set()
            for dep in deps[step]:
                before[step] |= {dep} | walk(dep)
        return before[step]

    out: dict[str, set[str]] = {}
    for step in deps:
        out.setdefault(label[step], set()).update(label[d] for d in walk(step))
    return out


@pytest.mark.parametrize("name", [*TOPOLOGIES])
def test_validates_and_plans(orch: Orch, name: str) -> None:
    topology = ROOT / name / "topology.yml"
    checked = orch("validate", str(topology))
    assert " 0 errors" in checked.stdout + checked.stderr
    deploy = plan(orch, topology)
    operations = {(s["node"], s["interface"], s["operation"])
                  for s in deploy["steps"] if s["kind"] == "operation"}  # fmt: skip
    images = {n for n, _, _ in operations if n.startswith(("ImageCreation", "DLSDAGImageT"))}
    # deploy builds and places the images, nothing else: no stage-in, no job submitted
    assert images and operations == {(n, "Standard", "start") for n in images}
    exec_job = plan(orch, topology, "--workflow", "exec_job")
    text = orch("plan", "--workflow", "exec_job", str(topology), *USER).stdout
    for step in exec_job["steps"]:  # each operation is orch's own, chosen by type
        if step["kind"] == "operation":
            short = step["interface"].rsplit(".", 1)[-1]
            assert f"{step['node']} {short}.{step['operation']}: orch's '" in text
    waits = closure(exec_job["steps"])
    _, ordered, side_by_side = TOPOLOGIES[name]
    for first, then in ordered:
        assert first in waits[then], f"{then} does not wait for {first}"
    for one, other in side_by_side:
        assert one not in waits[other] and other not in waits[one], f"{one} / {other}"


def nodes(orch: Orch, deployment: str) -> dict[str, dict[str, Any]]:
    status = json.loads(orch("status", deployment, "-f", "json").stdout)
    return {i["node"]: i["attributes"] for i in status["instances"]}


def deploy(orch: Orch, name: str, registry: Path, *extra: str) -> dict[str, dict[str, Any]]:
    """``orch deploy`` of blueprints/eflows4hpc/<name>: each image placed, no job submitted,
    no secret shown; the nodes' attributes."""
    set_secrets(orch)
    shutil.copy(ROOT / name / "topology.yml", orch.root / "topology.yml")
    deployed = orch("deploy", "topology.yml", *USER, *extra, "--poll-interval", "0.5",
                    timeout=300, ORCH_REGISTRY=str(registry))  # fmt: skip
    for secret in (value for _, _, value in SECRETS):
        assert secret not in deployed.stdout + deployed.stderr
    attributes = nodes(orch, TOPOLOGIES[name][0])
    placed = [n for n in attributes if n.startswith("DLSDAGImageTransfer")]
    assert placed
    for node, attrs in attributes.items():
        if node.startswith("DLSDAGImageTransfer"):
            image = attrs["image_file_path"]
            assert image.startswith("/home/orchtest/images/") and Path(image).is_file()
        elif not node.startswith(("ImageCreation", "Env", "AbstractEnvironment")):
            # jobs and data transfers: started, nothing submitted, nothing transferred
            assert attrs["state"] == "started", (node, attrs)
            assert not {"job_id", "TOSCA_JOB_ID", "execution_url"} & set(attrs), (node, attrs)
    return attributes


def run(orch: Orch, name: str, registry: Path, **inputs: str) -> dict[str, dict[str, Any]]:
    """``orch run exec_job`` with these inputs; every job COMPLETED; the nodes' attributes."""
    args = [arg for key, value in inputs.items() for arg in ("-i", f"{key}={value}")]
    ran = orch("run", "exec_job", "-n", TOPOLOGIES[name][0], *args, "--poll-interval", "0.5",
               timeout=300, ORCH_REGISTRY=str(registry))  # fmt: skip
    for secret in (*(value for _, _, value in SECRETS), DAV_PASSWORD):
        assert secret not in ran.stdout + ran.stderr
    attributes = nodes(orch, TOPOLOGIES[name][0])
    for node, attrs in attributes.items():
        if "Job" in node:
            assert attrs["job_status"] == "COMPLETED", (node, attrs)
    return attributes


def output(job: dict[str, Any]) -> str:
    return Path(job["output"]).read_text()


def calls(job: dict[str, Any]) -> list[dict[str, Any]]:
    """What the enqueue_compss stand-in was given, in the job's folder."""
    lines = (Path(job["work_dir"]) / "enqueue_compss.calls").read_text().splitlines()
    return [json.loads(line) for line in lines]


def undeploy(orch: Orch, name: str) -> None:
    orch("undeploy", TOPOLOGIES[name][0], timeout=300)
    listed = json.loads(orch("list", "-f", "json").stdout)
    assert [d["status"] for d in listed if d["name"] == TOPOLOGIES[name][0]] == ["undeployed"]


@pytest.fixture
def home_dir() -> Any:
    """A new folder in the site user's home (pytest's tmp folders are not theirs)."""
    path = Path(f"/home/orchtest/topology-{os.getpid()}-{time.monotonic_ns()}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the topologies ---------------------------------------------------------------------------


def test_two_jobs_the_second_reads_what_the_first_wrote(
    orch: Orch, eflows_site: HpcSite, apps_registry: Path, web: tuple[str, Files], home_dir: Path
) -> None:
    base, files = web
    b2share_record(files, base, "rec-2j", {"data.txt": TEXT.encode()})
    attributes = deploy(orch, "two-jobs", apps_registry)
    image = attributes["DLSDAGImageTransfer"]["image_file_path"]
    data, results = home_dir / "data", home_dir / "results"
    inputs = {"oid": "rec-2j", "data_path": str(data), "results_path": str(results)}

    attributes = run(orch, "two-jobs", apps_registry, **inputs)
    assert (data / "data.txt").read_text() == TEXT
    assert (results / "count.txt").read_text() == "7\n"
    assert (results / "report.txt").read_text() == "words=7\n"
    count, report = attributes["CountJob"], attributes["ReportJob"]
    assert "count: 7 words" in output(count) and "report: 7 words, 14 doubled" in output(report)
    assert calls(report)[-1]["options"]["container_image"] == image
    assert calls(report)[-1]["args"] == [f"{results}/count.txt", f"{results}/report.txt"]
    first = (count["job_id"], report["job_id"])

    (results / "report.txt").unlink()
    attributes = run(orch, "two-jobs", apps_registry, **inputs)
    again = (attributes["CountJob"]["job_id"], attributes["ReportJob"]["job_id"])
    assert len({*first, *again}) == 4, "a run reused a job"
    assert (results / "report.txt").read_text() == "words=7\n"
    undeploy(orch, "two-jobs")


def test_webdav_in_job_webdav_out(
    orch: Orch,
    eflows_site: HpcSite,
    credential: str,
    compss_bin: Path,
    apptainer: Path,
    apps_registry: Path,
    web: tuple[str, Files],
    dav: tuple[str, Path],
    home_dir: Path,
) -> None:
    dav_url, dav_root = dav
    orch.write("sites.yaml", "sites:\n" + eflows_site.yaml(
        credential, "hpc1", compss_bin, apptainer.parent,
        environment={"B2SHARE_SERVER": web[0], "WEBDAV_URL": dav_url}))  # fmt: skip
    set_secret(orch, DAV_SECRET, "username", DAV_USER)
    set_secret(orch, DAV_SECRET, "password", DAV_PASSWORD)
    (dav_root / "datasets" / "set1").mkdir(parents=True)
    (dav_root / "datasets" / "set1" / "data.txt").write_text(TEXT)
    deploy(orch, "webdav", apps_registry)
    data, results = home_dir / "data", home_dir / "results"
    inputs = {"dataset": "datasets/set1", "data_path": str(data), "results_path": str(results)}

    attributes = run(orch, "webdav", apps_registry, results_oid="results/run1", **inputs)
    assert (data / "data.txt").read_text() == TEXT
    assert (dav_root / "results" / "run1" / "count.txt").read_text() == "7\n"
    assert "count: 7 words" in output(attributes["PyCOMPSJob"])
    out = attributes["DLSDAGWebdavStageOutData"]
    assert out["execution_url"] == f"{dav_url}/results/run1" and out["files"] == "1"
    first = attributes["PyCOMPSJob"]["job_id"]

    attributes = run(orch, "webdav", apps_registry, results_oid="results/run2", **inputs)
    assert attributes["PyCOMPSJob"]["job_id"] != first
    assert attributes["DLSDAGWebdavStageInData"]["skipped"] == "1", "force is false: kept"
    assert (dav_root / "results" / "run2" / "count.txt").read_text() == "7\n"
    undeploy(orch, "webdav")


def test_http_model_and_b2share_data_one_job_uses_both(
    orch: Orch, eflows_site: HpcSite, apps_registry: Path, web: tuple[str, Files], home_dir: Path
) -> None:
    base, files = web
    b2share_record(files, base, "rec-model", {"data.txt": TEXT.encode()})
    model = b"name=tiny\nweight=3\n"
    files.routes["/models/tiny.model"] = (model, {})
    deploy(orch, "http-model", apps_registry)
    model_path, data = home_dir / "model" / "tiny.model", home_dir / "data"
    inputs = {"model_url": f"{base}/models/tiny.model", "model_path": str(model_path),
              "oid": "rec-model", "data_path": str(data)}  # fmt: skip

    attributes = run(orch, "http-model", apps_registry, **inputs)
    assert model_path.read_bytes() == model and (data / "data.txt").read_text() == TEXT
    job = attributes["PyCOMPSJob"]
    assert "model tiny: score 21" in output(job)
    assert calls(job)[-1]["args"] == [str(model_path), f"{data}/data.txt"]
    first = job["job_id"]

    attributes = run(orch, "http-model", apps_registry, **inputs)
    assert attributes["PyCOMPSJob"]["job_id"] != first
    assert files.hits["/models/tiny.model"] == 2, "HTTP2SSH's force is true: fetched again"
    assert files.hits["/api/files/bucket-rec-model/data.txt"] == 1, "B2SHARE data fetched again"
    undeploy(orch, "http-model")


@pytest.mark.usefixtures("two_sites")
def test_parallel_two_environments_on_two_sites(
    orch: Orch,
    eflows_site: HpcSite,
    second_slurm_site: SlurmSite,
    apps_registry: Path,
    web: tuple[str, Files],
    home_dir: Path,
) -> None:
    base, files = web
    b2share_record(files, base, "rec-p1", {"data.txt": TEXT.encode()})
    b2share_record(files, base, "rec-p2", {"data.txt": b"alpha beta gamma\n"})
    sites = ["--site", "Env1=hpc1", "--site", "Env2=hpc2"]
    attributes = deploy(orch, "parallel", apps_registry, *sites)
    assert (attributes["Env1"]["site"], attributes["Env2"]["site"]) == ("hpc1", "hpc2")
    images = [attributes[f"DLSDAGImageTransfer{i}"]["image_file_path"] for i in (1, 2)]
    inputs = {"oid1": "rec-p1", "data_path1": str(home_dir / "one"),
              "oid2": "rec-p2", "data_path2": str(home_dir / "two")}  # fmt: skip

    attributes = run(orch, "parallel", apps_registry, **inputs)
    for i in (1, 2):  # each chain on its own site: the job on its cluster, the data over its sshd
        node = "localhost" if i == 1 and eflows_site.scheduler == "sge" else f"hpc{i}-n1"
        assert attributes[f"PyCOMPSJob{i}"]["node_list"] == node
        port = (eflows_site, second_slurm_site)[i - 1].ssh.port
        assert f"@127.0.0.1:{port}/" in attributes[f"DLSDAGStageInData{i}"]["execution_url"]
    assert (home_dir / "one" / "count.txt").read_text() == "7\n"
    assert (home_dir / "two" / "count.txt").read_text() == "3\n"
    for i in (1, 2):
        assert (
            calls(attributes[f"PyCOMPSJob{i}"])[-1]["options"]["container_image"] == images[i - 1]
        )
    first = [attributes[f"PyCOMPSJob{i}"]["job_id"] for i in (1, 2)]

    attributes = run(orch, "parallel", apps_registry, **inputs)
    again = [attributes[f"PyCOMPSJob{i}"]["job_id"] for i in (1, 2)]
    assert first[0] != again[0] and first[1] != again[1]
    undeploy(orch, "parallel")


def test_pycomps_ansible_job_with_the_older_library(
    orch: Orch, eflows_site: HpcSite, apps_registry: Path, web: tuple[str, Files], home_dir: Path
) -> None:
    base, files = web
    b2share_record(files, base, "rec-pa", {"data.txt": TEXT.encode()})
    # the library's Runnable reads the user's SSH key from Vault (get_vault_secret): orch logs
    # in with the site's credentials, so it neither reads nor asks for that secret; the job
    # has no environment requirement: its pycomps_endpoint names the site
    attributes = deploy(orch, "pycomps-ansible", apps_registry)
    image = attributes["DLSDAGImageTransfer"]["image_file_path"]
    data, results = home_dir / "data", home_dir / "results"
    inputs = {"oid": "rec-pa", "target_path": str(data), "source_path": str(results)}

    modules = Path("/home/orchtest/modules.calls")  # the stand-in `module` records its calls
    seen = len(modules.read_text()) if modules.exists() else 0
    attributes = run(orch, "pycomps-ansible", apps_registry, **inputs)
    job = attributes["PyCOMPSJob"]
    assert (results / "count.txt").read_text() == "7\n"
    assert "count: 7 words" in output(job)
    call = calls(job)[-1]
    assert call["args"] == [f"{data}/data.txt", f"{results}/count.txt"]
    assert call["options"]["container_image"] == image
    assert call["options"]["container_opts"] == "-e" and call["options"]["qos"] == "debug"
    assert "module load COMPSs/3.3\n" in modules.read_text()[seen:]
    first = job["job_id"]

    seen = len(modules.read_text())
    again = {**inputs, "compss_module_version": "3.4"}  # the workflow input wins
    attributes = run(orch, "pycomps-ansible", apps_registry, **again)
    assert attributes["PyCOMPSJob"]["job_id"] != first
    assert "module load COMPSs/3.4\n" in modules.read_text()[seen:]
    undeploy(orch, "pycomps-ansible")


def test_pycomps_ansible_properties_reach_enqueue_compss() -> None:
    """The older library's flat properties and its operation's inputs, as submit_pycomps.yaml
    reads them: workflow inputs win, $NAME in arguments as the shell expands it."""
    properties = {"pycomps_endpoint": "login1", "compss_module_version": "2.10", "num_nodes": 1,
                  "qos": "debug", "input_data_path": "/tmp", "output_data_path": "/tmp",
                  "command": "/apps/src/count.py",
                  "arguments": ["$INPUT_DATA_PATH/data.txt", "${OUTPUT_DATA_PATH}/n", "${run}"],
                  "container_image": "", "container_compss_path": "/opt/view/compss",
                  "container_opts": "-e", "python_interpreter": "python3",
                  "extra_compss_opts": "--log_level=debug"}  # fmt: skip
    inputs = {**properties, "num_nodes_input": "2", "compss_module_version_input": "",
              "input_data_path_input": "/data in", "output_data_path_input": "",
              "transferred_container_image": "/home/u/images/app.sif"}  # fmt: skip
    runnable, builtin = "tosca.interfaces.node.lifecycle.Runnable", Artifact("pycompss", Path("-"))
    task = Task("d", "PyCOMPSJob", "PyCOMPSJob/0", runnable, "submit", builtin, inputs=inputs,
                properties=properties, environment={"run": "r1"})  # fmt: skip
    props = _yorc_properties(properties, inputs)
    assert props["modules"] == ["COMPSs/2.10"]
    assert props["environment"] == {"INPUT_DATA_PATH": "/data in", "OUTPUT_DATA_PATH": "/tmp"}
    words = enqueue_command(task, props)
    assert words[:2] == ["enqueue_compss", "--num_nodes=2"]
    for flag in ("--qos=debug", "--container_image=/home/u/images/app.sif",
                 "--container_opts=-e", "--container_compss_path=/opt/view/compss",
                 "--python_interpreter=python3", "--log_level=debug"):  # fmt: skip
        assert flag in words
    assert words[-4:] == ["/apps/src/count.py", "'/data in/data.txt'", "/tmp/n", "r1"]
