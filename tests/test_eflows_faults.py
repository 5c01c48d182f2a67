"""eFlows4HPC topologies given bad input, through the real CLI: each failure names the node, the
operation and the cause, and nothing deployed is forgotten (the deployment stays listed; fixing
the cause and running the same command again resumes and succeeds).

The topologies are variants of blueprints/eflows4hpc/minimal/topology.yml written by the tests;
the site, registry, B2SHARE stand-in and secrets are those of tests/sites/eflows.py, WebDAV a
real WsgiDAV with basic auth (tests/sites/web.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from orch.transfers import httpio, webdav
from orch.transfers.http import failure, http_error
from sites.cli import ORCH, Orch, site_yaml
from sites.eflows import set_secrets
from sites.fixtures import SlurmSite
from sites.web import Files, b2share_record, free_port, serve_files, serve_webdav

MINIMAL = Path(__file__).resolve().parent.parent / "blueprints" / "eflows4hpc" / "minimal"
NAME = "minimal_workflow"
INPUTS = ("-i", "user_id=orchtest", "-i", "vault_id=0123456789abcdef")


def topology(orch: Orch, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The minimal topology, changed by ``change``, as topology.yml of the test's folder."""
    doc = yaml.safe_load((MINIMAL / "topology.yml").read_text())
    if change is not None:
        change(doc)
    path = orch.root / "topology.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def deploy(orch: Orch, registry: Path, *extra: str, check: int | None = 0) -> Any:
    return orch("deploy", "topology.yml", *INPUTS, "--poll-interval", "0.5", *extra,
                check=check, timeout=300, ORCH_REGISTRY=str(registry))  # fmt: skip


def listed(orch: Orch) -> dict[str, str]:
    """Deployment name -> status, as ``orch list`` shows them."""
    return {d["name"]: d["status"] for d in json.loads(orch("list", "-f", "json").stdout)}


def instances(orch: Orch) -> dict[str, dict[str, Any]]:
    status = json.loads(orch("status", NAME, "-f", "json").stdout)
    return {i["node"]: i for i in status["instances"]}


def errors(proc: Any) -> list[str]:
    """The lines orch wrote to standard error."""
    return proc.stderr.splitlines()


def store_secret(orch: Orch, path: str, field: str, value: str) -> None:
    """``orch secrets set PATH FIELD`` with the value on standard input."""
    subprocess.run([*ORCH, "secrets", "set", path, field], input=value, text=True, check=True,
                   cwd=orch.root, env=orch.env(), capture_output=True)  # fmt: skip


def site_path(prefix: str) -> str:
    """A fresh path in the site user's home (the site is this machine)."""
    return f"/home/orchtest/{prefix}-{os.getpid()}-{time.monotonic_ns()}"


# -- 1. no site for an environment --------------------------------------------------------------


def test_two_sites_and_no_site_option_is_a_configuration_error_naming_the_way_out(
    orch: Orch, site: SlurmSite, credential: str, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    sites.write_text(sites.read_text() + site_yaml(site, credential, name="hpc2", port=1))

    failed = deploy(orch, registry, check=3)
    assert errors(failed) == [
        f"orch: environment 'AbstractEnvironment' is no site yet: {sites} has 2 sites "
        "(hpc1, hpc2); say which with --site AbstractEnvironment=SITE"
    ]
    assert failed.stdout == ""
    assert listed(orch) == {NAME: "failed"}
    assert all(i["state"] == "initial" for i in instances(orch).values()), "something ran"

    deploy(orch, registry, "--site", "AbstractEnvironment=hpc1")
    assert listed(orch) == {NAME: "deployed"}
    image = instances(orch)["DLSDAGImageTransfer"]["attributes"]["image_file_path"]
    assert Path(image).is_file()


def test_a_site_option_naming_an_unknown_site_stops_before_anything_runs(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    failed = deploy(orch, registry, "--site", "AbstractEnvironment=hpc9", check=3)
    assert errors(failed)[0] == (
        f"orch: environment 'AbstractEnvironment': --site names site 'hpc9', which {sites} "
        "does not have (sites: hpc1); say which with --site AbstractEnvironment=SITE"
    )
    assert listed(orch) == {NAME: "failed"}
    assert all(i["state"] == "initial" for i in instances(orch).values()), "something ran"
    deploy(orch, registry, "--site", "AbstractEnvironment=hpc1")
    assert listed(orch) == {NAME: "deployed"}


def test_an_unknown_site_is_said_as_the_environments(orch: Orch, site: SlurmSite,
                                                     registry: Path) -> None:  # fmt: skip
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    failed = deploy(orch, registry, "--site", "AbstractEnvironment=hpc9", check=3)
    assert errors(failed) == [
        f"orch: environment 'AbstractEnvironment': --site names site 'hpc9', which {sites} "
        "does not have (sites: hpc1); say which with --site AbstractEnvironment=SITE"
    ]


def test_a_site_option_naming_no_environment_node_is_refused(orch: Orch, site: SlurmSite,
                                                             registry: Path) -> None:  # fmt: skip
    set_secrets(orch)
    topology(orch)
    failed = deploy(orch, registry, "--site", "AbstractEnvironmnet=hpc1", check=3)
    assert errors(failed) == [
        "orch: --site AbstractEnvironmnet=hpc1: the topology has no execution environment "
        "node 'AbstractEnvironmnet' (environment nodes: AbstractEnvironment)"
    ]
    assert NAME not in listed(orch) or all(
        i["state"] == "initial" for i in instances(orch).values())


# -- 2. a secret not in the store ---------------------------------------------------------------


def store_secrets(orch: Orch, *, but: tuple[str, str] | None = None) -> None:
    """The services' secrets of sites/eflows.py in orch's store, all or all ``but`` one."""
    set_secrets(orch)
    if but is not None:
        orch("secrets", "remove", *but)


def test_a_secret_not_in_the_store_stops_deploy_and_run_before_anything_runs(
    orch: Orch, site: SlurmSite, registry: Path, web: tuple[str, Files]
) -> None:
    path = "/secret/data/services_secrets/dls"
    store_secrets(orch, but=(path, "password"))
    topology(orch)
    failed = deploy(orch, registry, check=3)
    assert errors(failed) == [
        "orch: deploy needs 2 secret(s) that orch cannot give; nothing ran:",
        f"  node 'DLSDAGImageTransfer', property dls_api_password: get_secret '{path}' field "
        "'password' is not in orch's secret store",
        f"  node 'DLSDAGStageInData', property dls_api_password: get_secret '{path}' field "
        "'password' is not in orch's secret store",
        "store each (the value is read from standard input, never the command line):",
        "  orch secrets set secret/services_secrets/dls password",
    ]
    assert NAME not in listed(orch), "nothing ran, nothing is recorded"

    set_secrets(orch)
    deploy(orch, registry)
    assert listed(orch) == {NAME: "deployed"}

    # the same at run time: the secret gone since deploy
    base, files = web
    b2share_record(files, base, "rec-7", {"data.txt": b"a b c\n"})
    orch("secrets", "remove", path, "password")
    target = site_path("staged")
    run = ["run", "exec_job", "-n", NAME, "-i", "oid=rec-7", "-i", f"target_path={target}",
           "-i", f"staged_in_data_path={target}", "--poll-interval", "0.5"]  # fmt: skip
    failed = orch(*run, check=3, timeout=300)
    assert errors(failed) == [  # only what exec_job runs: not DLSDAGImageTransfer's
        "orch: run exec_job needs 1 secret(s) that orch cannot give; nothing ran:",
        f"  node 'DLSDAGStageInData', property dls_api_password: get_secret '{path}' field "
        "'password' is not in orch's secret store",
        "store each (the value is read from standard input, never the command line):",
        "  orch secrets set secret/services_secrets/dls password",
    ]
    assert not Path(target).exists()
    assert listed(orch) == {NAME: "deployed"}
    set_secrets(orch)
    orch(*run, timeout=300)
    assert Path(target, "data.txt").read_text() == "a b c\n"
    shutil.rmtree(target)


# -- 5. a registry step that does not exist -------------------------------------------------------


def test_a_step_not_in_the_registry_fails_deploy_naming_workflow_step_and_registry(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    step = registry / NAME / "wordcount"
    step.rename(registry / NAME / "wordcount-v2")
    failed = deploy(orch, registry, check=4)
    cause = (f"workflow {NAME} step wordcount is not in the workflow registry {registry} "
             f"(no folder {NAME}/wordcount: the workflow exists)")  # fmt: skip
    port = site.ssh.port
    assert f"orch: ImageCreation/0 Standard.start failed on orchtest@127.0.0.1:{port}: {cause}" \
        in errors(failed)
    assert "retrying" not in failed.stderr, "a registry without the step is no lost connection"
    assert failed.stderr.count(cause) == 2  # the step's line and the summary's
    assert listed(orch) == {NAME: "failed"}
    assert instances(orch)["DLSDAGImageTransfer"]["state"] == "initial"

    (registry / NAME / "wordcount-v2").rename(step)
    deploy(orch, registry)
    assert listed(orch) == {NAME: "deployed"}
    assert Path(instances(orch)["DLSDAGImageTransfer"]["attributes"]["image_file_path"]).is_file()


def test_a_deploy_that_failed_half_way_undeploys_cleanly(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    shutil.rmtree(registry / NAME / "wordcount")
    deploy(orch, registry, check=4)
    assert listed(orch) == {NAME: "failed"}
    undeployed = orch("undeploy", NAME, timeout=300)
    assert "ok" in errors(undeployed)[-1]
    assert listed(orch) == {NAME: "undeployed"}
    assert all(i["state"] in ("initial", "deleted") for i in instances(orch).values())


# -- 6. a failing job ---------------------------------------------------------------------------

FAILING_WORDCOUNT = """\
import os
import shutil
import signal
import sys
print(f"wordcount: reading {sys.argv[1]}")
if not os.path.isfile(sys.argv[1]):
    print(f"wordcount: {sys.argv[1]} is not there", file=sys.stderr)
    sys.exit(3)
print(f"wordcount: {len(open(sys.argv[1]).read().split())} words")
"""


def test_a_failing_job_exits_4_with_its_exit_code_and_last_lines_then_runs_again(
    orch: Orch, site: SlurmSite, registry: Path, web: tuple[str, Files]
) -> None:
    (registry / NAME / "wordcount" / "src" / "wordcount.py").write_text(FAILING_WORDCOUNT)
    set_secrets(orch)
    topology(orch)
    deploy(orch, registry)
    base, files = web
    b2share_record(files, base, "rec-9", {"notes.txt": b"not the data\n"})  # no data.txt
    target = site_path("staged")
    run = ["run", "exec_job", "-n", NAME, "-i", "oid=rec-9", "-i", f"target_path={target}",
           "-i", f"staged_in_data_path={target}", "--poll-interval", "0.5"]  # fmt: skip
    failed = orch(*run, check=4, timeout=300)
    job = instances(orch)["PyCOMPSJob"]["attributes"]
    port = site.ssh.port
    where = f"orchtest@127.0.0.1:{port}"
    summary = (f"orch: PyCOMPSJob/0 tosca.interfaces.node.lifecycle.Runnable.run failed on "
               f"{where} (exit status 3): job {job['job_id']} on {where} ended FAILED: exit "
               f"code 3; output in {job['output']}")  # fmt: skip
    assert summary in errors(failed)
    assert f"    wordcount: {target}/data.txt is not there" in errors(failed)
    assert listed(orch) == {NAME: "deployed"}
    assert instances(orch)["PyCOMPSJob"]["state"] == "failed"
    shown = orch("status", NAME).stdout
    assert f"wordcount: {target}/data.txt is not there" in shown

    Path(target, "data.txt").write_text("one two three\n")  # the cause fixed on the site
    again = orch(*run, timeout=300)
    assert "2 already done" in errors(again)[-1], "the run resumed at the failed job"
    job = instances(orch)["PyCOMPSJob"]["attributes"]
    assert job["job_status"] == "COMPLETED"
    assert "wordcount: 3 words" in Path(job["output"]).read_text()
    shutil.rmtree(target)


# -- stage-in variants: exec_job with another DLS node in DLSDAGStageInData's place -------------

ENVIRONMENT_REQUIREMENT = {"dependsOnAbstractEnvironmentExec_env": {
    "type_requirement": "environment", "node": "AbstractEnvironment",
    "capability": "eflows4hpc.env.capabilities.ExecutionEnvironment",
    "relationship": "tosca.relationships.DependsOn",
}}  # fmt: skip
DLS_CREDENTIALS = {
    "dls_api_username": {"get_secret": ["/secret/data/services_secrets/dls", "data=username"]},
    "dls_api_password": {"get_secret": ["/secret/data/services_secrets/dls", "data=password"]},
}


def stage_in_by(name: str, template: dict[str, Any],
                inputs: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], None]:
    """A change of the minimal topology: exec_job stages in with node ``name`` (``template``)
    instead of DLSDAGStageInData; ``inputs`` replace the workflow's ``oid``."""

    def change(doc: dict[str, Any]) -> None:
        body = doc["topology_template"]
        del body["node_templates"]["DLSDAGStageInData"]
        body["node_templates"][name] = {
            **template, "properties": {**DLS_CREDENTIALS, **template.get("properties", {})},
            "requirements": [ENVIRONMENT_REQUIREMENT],
        }  # fmt: skip
        workflow = body["workflows"]["exec_job"]
        if inputs is not None:
            del workflow["inputs"]["oid"]
            workflow["inputs"].update(inputs)
        steps = {}
        for key, step in workflow["steps"].items():
            if step["target"] == "DLSDAGStageInData":
                step["target"] = name
            step["on_success"] = [s.replace("DLSDAGStageInData", name)
                                  for s in step.get("on_success", [])]  # fmt: skip
            steps[key.replace("DLSDAGStageInData", name)] = step
        workflow["steps"] = steps

    return change


def exec_job(*inputs: str) -> list[str]:
    return ["run", "exec_job", "-n", NAME, *[a for i in inputs for a in ("-i", i)],
            "--poll-interval", "0.5"]  # fmt: skip


# -- 3. WebDAV: refused credentials, a path not there ----------------------------------------------

DAV_USER, DAV_PASSWORD = "dls", "dav-Secret-4711"
DAV_SECRET = "/secret/data/services_secrets/webdav"


def test_webdav_401_and_404_name_node_operation_and_cause_then_resume(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    with serve_webdav(DAV_USER, DAV_PASSWORD) as (dav, root):
        (root / "set1").mkdir()
        (root / "set1" / "data.txt").write_text("alpha beta gamma delta\n")
        set_secrets(orch)
        wrong = "not-the-Password-99"
        store_secret(orch, DAV_SECRET, "password", wrong)
        node = {"type": "dls.ansible.nodes.DLSDAGWebdavStageInData", "properties": {
            "dag_id": "webdav_stagein", "input_name_for_oid": "oid",
            "input_name_for_target_path": "target_path", "user_id": "", "vault_id": "",
            "extra_conf": {"webdav_url": dav, "webdav_user": DAV_USER,
                           "webdav_password": {"get_secret": [DAV_SECRET, "data=password"]}},
        }}  # fmt: skip
        topology(orch, stage_in_by("WebdavStageIn", node))
        deploy(orch, registry)
        target = site_path("dav")
        run = exec_job("oid=set1", f"target_path={target}", f"staged_in_data_path={target}")

        failed = orch(*run, check=4, timeout=300)
        where = f"orchtest@127.0.0.1:{site.ssh.port}"
        assert errors(failed)[-3] == (
            f"orch: WebdavStageIn/0 tosca.interfaces.node.lifecycle.Runnable.submit failed on "
            f"{where}: WebDAV stage-in: {dav}/set1 -> {where}:{target}: HTTP 401 authentication "
            f"refused (user {DAV_USER})"
        )
        assert wrong not in failed.stdout + failed.stderr
        assert not Path(target).exists()
        assert listed(orch) == {NAME: "deployed"}

        store_secret(orch, DAV_SECRET, "password", DAV_PASSWORD)
        orch(*run, timeout=300)
        assert Path(target, "data.txt").read_text() == "alpha beta gamma delta\n"
        job = instances(orch)["PyCOMPSJob"]["attributes"]
        assert "wordcount: 4 words" in Path(job["output"]).read_text()

        other = site_path("dav")
        run = exec_job("oid=set2", f"target_path={other}", f"staged_in_data_path={other}")
        failed = orch(*run, check=4, timeout=300)
        assert errors(failed)[-3] == (
            f"orch: WebdavStageIn/0 tosca.interfaces.node.lifecycle.Runnable.submit failed on "
            f"{where}: WebDAV stage-in: {dav}/set2 -> {where}:{other}: HTTP 404 not found"
        )
        assert not Path(other).exists()
        (root / "set2").mkdir()
        (root / "set2" / "data.txt").write_text("one\n")
        orch(*run, timeout=300)
        assert Path(other, "data.txt").read_text() == "one\n"
        shutil.rmtree(target)
        shutil.rmtree(other)


def test_a_refusal_says_which_user_was_refused_or_that_none_was_sent() -> None:
    run = SimpleNamespace(context=SimpleNamespace(cancel=threading.Event()), deadline=None)
    fail = failure("WebDAV stage-in", "http://dav.example.org/set1", "hpc1:/home/u/in")
    refused = httpio.HttpStatusError(401, "Unauthorized", "http://dav.example.org/set1")
    said = http_error(refused, fail, run, httpio.Auth("dls", "pw"), webdav.HOW)  # type: ignore
    assert str(said) == ("WebDAV stage-in: http://dav.example.org/set1 -> hpc1:/home/u/in: "
                         "HTTP 401 authentication refused (user dls)")  # fmt: skip
    said = http_error(refused, fail, run, None, webdav.HOW)  # type: ignore[arg-type]
    assert str(said) == (
        "WebDAV stage-in: http://dav.example.org/set1 -> hpc1:/home/u/in: HTTP 401 "
        "authentication refused (no credentials were sent: webdav_user and webdav_password in "
        "the node's extra_conf, or user:password@ in webdav_url)"
    )
    missing = httpio.HttpStatusError(404, "Not Found", "http://dav.example.org/set1")
    said = http_error(missing, fail, run, httpio.Auth("dls", "pw"), webdav.HOW)  # type: ignore
    assert str(said).endswith(": HTTP 404 not found")


# -- 4. an unreachable source -------------------------------------------------------------------

HTTP_NODE = {"type": "dls.ansible.nodes.HTTP2SSH", "properties": {
    "dag_id": "plainhttp2ssh", "input_name_for_url": "url",
    "input_name_for_target_path": "target_path", "user_id": "", "vault_id": "",
}}  # fmt: skip
URL_INPUT = {"url": {"type": "string", "required": True}}


def test_an_unreachable_source_names_node_operation_source_and_target_then_resumes(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch, stage_in_by("HttpStageIn", HTTP_NODE, URL_INPUT))
    deploy(orch, registry)
    port = free_port()
    url = f"http://127.0.0.1:{port}/data/data.txt"
    target = site_path("http")
    run = exec_job(f"url={url}", f"target_path={target}/", f"staged_in_data_path={target}")
    began = time.monotonic()
    failed = orch(*run, check=4, timeout=300)
    assert time.monotonic() - began < 30, "a closed port is said at once, not after timeouts"
    where = f"orchtest@127.0.0.1:{site.ssh.port}"
    assert errors(failed)[-3] == (
        f"orch: HttpStageIn/0 tosca.interfaces.node.lifecycle.Runnable.submit failed on {where}: "
        f"HTTP2SSH: {url} -> {where}:{target}/: source host 127.0.0.1:{port} unreachable "
        "(connection refused)"
    )
    assert "retrying" not in failed.stderr
    assert not Path(target).exists()
    assert listed(orch) == {NAME: "deployed"}

    with serve_files(port) as (_, files):  # the source is up again
        files.routes["/data/data.txt"] = (b"uno dos\n", {})
        orch(*run, timeout=300)
    assert Path(target, "data.txt").read_text() == "uno dos\n"
    job = instances(orch)["PyCOMPSJob"]["attributes"]
    assert "wordcount: 2 words" in Path(job["output"]).read_text()
    shutil.rmtree(target)


# -- 7. Ctrl-C mid-transfer ---------------------------------------------------------------------


def test_ctrl_c_mid_transfer_exits_130_quickly_leaves_no_half_file_and_resumes(
    orch: Orch, site: SlurmSite, registry: Path, web: tuple[str, Files]
) -> None:
    base, files = web
    set_secrets(orch)
    topology(orch, stage_in_by("HttpStageIn", HTTP_NODE, URL_INPUT))
    deploy(orch, registry)
    target = site_path("slow")
    run = exec_job(f"url={base}/slow/data.txt", f"target_path={target}/",
                   f"staged_in_data_path={target}")  # fmt: skip
    proc = orch.start(*run)
    try:
        assert files.slow_sent.wait(60), "the transfer did not start"
        time.sleep(1.0)  # well into it
        proc.send_signal(signal.SIGINT)  # the first Ctrl-C waits for running operations
        time.sleep(1.0)
        assert proc.poll() is None, "the first Ctrl-C cut the running transfer"
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGINT)  # the second cancels them
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "stopping: waiting for 1 running operation(s) (interrupt again to cancel them)" \
        in stderr
    assert time.monotonic() - stopped_at < 3.0, "Ctrl-C did not stop the transfer quickly"
    assert not Path(target, "data.txt").exists(), "a half file under the final name"
    left = sorted(p.name for p in Path(target).iterdir()) if Path(target).exists() else []
    assert not left, f"left on the site: {left}"
    assert listed(orch) == {NAME: "deployed"}
    assert instances(orch)["PyCOMPSJob"]["state"] != "failed"

    files.routes["/slow/data.txt"] = (b"ein zwei drei vier fuenf\n", {})  # no longer slow
    again = orch(*run, timeout=300)
    assert Path(target, "data.txt").read_text() == "ein zwei drei vier fuenf\n"
    job = instances(orch)["PyCOMPSJob"]["attributes"]
    assert job["job_status"] == "COMPLETED"
    assert "wordcount: 5 words" in Path(job["output"]).read_text()
    assert "3 operation(s) ok" in errors(again)[-1], "the transfer ran again, then the job"
    shutil.rmtree(target)


# -- what a run leaves behind -------------------------------------------------------------------


def test_a_finished_run_leaves_no_job_running(orch: Orch, site: SlurmSite, registry: Path,
                                              web: tuple[str, Files]) -> None:  # fmt: skip
    base, files = web
    b2share_record(files, base, "rec-3", {"data.txt": b"x y\n"})
    set_secrets(orch)
    topology(orch)
    deploy(orch, registry)
    target = site_path("staged")
    orch(*exec_job("oid=rec-3", f"target_path={target}", f"staged_in_data_path={target}"),
         timeout=300)  # fmt: skip
    shutil.rmtree(target)
    status = json.loads(orch("status", NAME, "-f", "json").stdout)
    assert {j["node"]: j["status"] for j in status["jobs"]} == {
        "DLSDAGStageInData": "completed", "PyCOMPSJob": "completed"}
    assert instances(orch)["DLSDAGStageInData"]["state"] != "submitting"
