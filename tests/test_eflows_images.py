"""eFlows4HPC images done by orch: ``eflows-image`` (ImageCreation) builds a workflow registry
step's image with orch's image machinery, ``eflows-image-transfer`` (DLSDAGImageTransfer)
places it on a site.

The builds are real (podman, ``tests/sites/podman.py``; Apptainer when installed) from a
registry the test writes: a step whose recipe starts from ``scratch`` with a static busybox, so
nothing is pulled. Spack cannot be installed here: the Spack path runs the stand-in of
tests/test_images.py in a base image built first. The transfers go to the test sshd as the
unprivileged user, whose copy is then checked byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.eflows_images import (
    EflowsImageExecutor,
    EflowsImageTransferExecutor,
    fill_login,
)
from orch.executors.images import ImageExecutor
from orch.executors.registry import load_executors
from orch.images import eflows
from orch.images.spec import ImageError
from orch.transport.local import LocalTransport
from orch.transport.ssh import TransportPool
from sites.podman import Podman, static_busybox
from sites.sshd import SshServer

INSTALL_BUSYBOX = "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin && /bin/busybox --install -s"
MACHINE = {"platform": "linux/amd64", "architecture": "x86_64", "container_engine": "podman",
           "mpi": "", "gpu": "none"}  # fmt: skip


@pytest.fixture(autouse=True)
def _image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own image cache (and registry clones beside it)."""
    monkeypatch.setenv("ORCH_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(eflows.REGISTRY_ENV, raising=False)
    return tmp_path / "cache"


def write_step(registry: Path, workflow: str = "minimal", step: str = "step1", *,
               specs: list[str] | None = None, base: str = "scratch",
               greeting: str = "hello from the registry") -> Path:
    """A registry step: src/ with a file, busybox beside the recipe, a recipe of base
    ``base`` (scratch: busybox copied in) and the given Spack specs."""
    folder = registry / workflow / step
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "hello.txt").write_text(greeting + "\n")
    orch: dict[str, Any] = {"base": base, "runscript": f"cat /{step}/src/hello.txt"}
    if base == "scratch":
        busybox = static_busybox()
        shutil.copy2(busybox, folder / "busybox")
        orch["files"] = {"busybox": "/bin/busybox", "busybox-sh": "/bin/sh"}
        shutil.copy2(busybox, folder / "busybox-sh")
        orch["post"] = [INSTALL_BUSYBOX]
    recipe = {"spack": {"specs": specs or []}, "orch": orch}
    (folder / "spack.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def image_task(registry: str | Path | None, *, operation: str = "submit",
               interface: str = "Runnable", workflow: str = "minimal", step: str = "step1",
               machine: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
               **props: Any) -> Task:
    properties = {"workflow": workflow, "step_id": step, "machine": machine or MACHINE,
                  "force": False, "service_url": "https://images.example", "username": "u",
                  "password": "image-service-password", **props}  # fmt: skip
    environment = {eflows.REGISTRY_ENV: str(registry)} if registry is not None else {}
    return Task(
        deployment="eflows", node="ImageCreation", instance="ImageCreation/0",
        interface=interface, operation=operation,
        implementation=Artifact("eflows-image", Path("eflows-image")),
        inputs=dict(inputs or {}), environment=environment, properties=properties,
        timeout=300, secret_values=("image-service-password",),
    )  # fmt: skip


def transfer_task(host: Host, related: dict[str, Any], *, target_path: str = "",
                  inputs: dict[str, Any] | None = None, operation: str = "start",
                  **props: Any) -> Task:
    properties = {"target_path": target_path, "run_in_standard_mode": True, **props}
    return Task(
        deployment="eflows", node="ImageTransfer", instance="ImageTransfer/0",
        interface="Standard", operation=operation,
        implementation=Artifact("eflows-image-transfer", Path("eflows-image-transfer")),
        inputs=dict(inputs or {}), host=host, properties=properties,
        related={"dependency": related}, timeout=300,
    )  # fmt: skip


class Run:
    """One operation of an executor, with its log lines."""

    def __init__(self, executor: Any, task: Task, *, transport: Any = None,
                 force: bool = False):
        self.lines: list[str] = []
        context = RunContext(
            transport=transport or (lambda host: LocalTransport()),
            cancel=threading.Event(),
            log=lambda stream, line: self.lines.append(line),
            force_rebuild=force,
        )
        self.result: OperationResult = executor.run(task, context)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def outputs(self) -> dict[str, str]:
        assert self.result.ok, f"{self.result.message}\n{self.log}"
        return self.result.outputs


def build(task: Task, **kwargs: Any) -> Run:
    return Run(EflowsImageExecutor(), task, **kwargs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def site_folder(ssh_server: SshServer) -> Iterator[str]:
    """A folder name under orchtest's home, removed after the test."""
    name = f"eflows-images-{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(Path("/home") / ssh_server.unprivileged_user / name, ignore_errors=True)


# -- registry, recipe, machine (no build) -----------------------------------------------------


def test_both_executors_are_registered() -> None:
    names = [executor.name for executor in load_executors()]
    assert "eflows-image" in names and "eflows-image-transfer" in names
    executor = EflowsImageExecutor()
    assert executor.accepts("eflows-image", "orch.artifacts.Builtin")
    assert not executor.accepts("eflows-image", None)
    assert not executor.accepts("image", "orch.artifacts.Builtin")


def test_a_missing_step_names_the_workflow_the_step_and_the_registry(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    write_step(registry, "minimal", "step1")
    run = build(image_task(registry, step="step9"))
    assert run.result.status == "failed"
    assert run.result.started, "not started: the engine would retry it on a new connection"
    assert run.result.message == (
        f"workflow minimal step step9 is not in the workflow registry {registry} (no folder "
        "minimal/step9: the workflow exists)")
    other = build(image_task(registry, workflow="nowhere"))
    assert "workflow nowhere step step1 is not in the workflow registry" in other.result.message
    assert "no such workflow" in other.result.message
    hostile = build(image_task(registry, step="../minimal"))
    assert hostile.result.status == "failed"
    assert "is not a folder name of the workflow registry" in hostile.result.message


def test_without_a_registry_the_message_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = build(image_task(None))
    assert run.result.status == "failed"
    assert "orch deploy --registry PATH|URL" in run.result.message
    assert "image-service-password" not in run.result.message + run.log
    monkeypatch.setenv(eflows.REGISTRY_ENV, str(tmp_path / "from-orch-environment"))
    assert str(tmp_path / "from-orch-environment") in build(image_task(None)).result.message
    monkeypatch.delenv(eflows.REGISTRY_ENV)

    class SiteWithRegistry:
        name = "hpc1"
        registry = str(tmp_path / "elsewhere")
        container_runtime = None

    task = image_task(None)
    task = Task(**{**task.__dict__, "site": SiteWithRegistry()})
    from_site = build(task)
    assert from_site.result.message.startswith(f"the workflow registry {tmp_path}/elsewhere "
                                               "is not a folder")  # fmt: skip


def test_the_machine_inputs_override_its_properties_as_the_playbook_does() -> None:
    inputs = {"machine": {"platform": "linux/amd64", "architecture": "skylake",
                          "container_engine": "singularity", "mpi": "openmpi@4", "gpu": "none"},
              "machine_architecture_from_env": "zen2", "machine_mpi_from_env": "",
              "machine_gpu_from_env": "cuda@11.4",
              "machine_container_engine_from_env": "docker"}  # fmt: skip
    machine = eflows.machine_of(inputs, {"machine": MACHINE})
    assert machine == eflows.Machine("linux/amd64", "zen2", "docker", "openmpi@4", "cuda@11.4")
    assert eflows.builder_of(machine, None) == "podman"
    assert eflows.builder_of(eflows.Machine(container_engine="singularity"), None) == "apptainer"
    assert eflows.builder_of(eflows.Machine(), "podman") == "podman"
    # Yorc hands a map property over as JSON text
    text = eflows.machine_of({"machine": '{"platform": "linux/amd64", "container_engine": '
                                          '"apptainer", "architecture": "x86_64", "mpi": "", '
                                          '"gpu": ""}'}, {})  # fmt: skip
    assert text.container_engine == "apptainer"
    with pytest.raises(ImageError, match="container_engine 'lxc'"):
        eflows.builder_of(eflows.Machine(container_engine="lxc"), None)
    with pytest.raises(ImageError, match="does not cross-build"):
        eflows.check_platform(eflows.Machine(platform="linux/ppc64le"))


def test_the_recipe_and_the_machine_make_the_spack_environment(tmp_path: Path) -> None:
    folder = tmp_path / "registry" / "wf" / "step"
    (folder / "src").mkdir(parents=True)
    (folder / "eflows4HPC.yaml").write_text(yaml.safe_dump({"spack": {
        "specs": ["compss", "py-dislib@0.9"], "packages": {"all": {"variants": ["+mpi"]}}}}))
    recipe = eflows.read_recipe(tmp_path / "registry", "wf", "step", "reg")
    assert recipe.file.name == "eflows4HPC.yaml" and recipe.src == folder / "src"
    machine = eflows.Machine("linux/amd64", "skylake", "singularity", "openmpi@4", "cuda")
    env = eflows.spack_environment(recipe, machine)
    assert env == {"specs": ["compss", "py-dislib@0.9"], "view": True,
                   "packages": {"all": {"variants": ["+mpi"]}}, "target": "skylake",
                   "mpi": "openmpi@4", "gpu": "cuda"}  # fmt: skip
    props = eflows.image_properties(recipe, machine, builder="apptainer", base=None)
    assert props["image_name"] == "wf_step" and props["base"] == "spack/ubuntu-jammy:latest"
    assert props["files"] == {str(folder / "src"): "/step/src"}
    (folder / "spack.yaml").write_text("spack: {specs: []}\norch: {files: {../../x: /x}}\n")
    (folder / "eflows4HPC.yaml").unlink()
    outside = eflows.read_recipe(tmp_path / "registry", "wf", "step", "reg")
    assert eflows.spack_environment(outside, machine) is None
    with pytest.raises(ImageError, match="outside the step's folder"):
        eflows.image_properties(outside, machine, builder="podman", base=None)


def test_target_path_placeholders() -> None:
    assert fill_login("/p/scratch/{{ login }}/images", "ana") == "/p/scratch/ana/images"
    assert fill_login("{{user_id}}/imgs", "ana") == "ana/imgs"
    with pytest.raises(ImageError, match="cannot fill"):
        fill_login("/x/{{ project }}", "ana")


def test_standard_start_does_nothing_out_of_standard_mode(tmp_path: Path) -> None:
    task = image_task(tmp_path / "nothing", operation="start", interface="Standard",
                      inputs={"run_in_standard_mode": "false"})
    run = build(task)
    assert run.result.ok and run.result.outputs == {}
    polled = build(image_task(tmp_path / "nothing", operation="run"))
    assert polled.result.ok and polled.result.outputs == {}


def test_a_transfer_without_an_image_says_what_it_needs(ssh_user_host: Host) -> None:
    run = Run(EflowsImageTransferExecutor(), transfer_task(ssh_user_host, {}))
    assert run.result.status == "failed"
    assert "needs a `dependency` requirement on the ImageCreation node" in run.result.message


# -- builds and transfers -----------------------------------------------------------------------


def test_build_then_transfer_once_and_force_rebuilds(
    tmp_path: Path, podman_env: Podman, ssh_server: SshServer, ssh_user_host: Host,
    ssh_pool: TransportPool, site_folder: str,
) -> None:
    registry = tmp_path / "registry"
    write_step(registry)
    first = build(image_task(registry))
    out = first.outputs
    image = Path(out["image_path"])
    assert out["built"] == "true" and out["image_id"] == out["filename"] == image.name
    assert image.parent == tmp_path / "cache" / "images"
    assert image.name == f"minimal_step1-{out['image_hash'][:12]}.tar"
    assert out["image_sha256"] == sha256(image)
    assert "the recipe has no Spack specs" in first.log and "STEP 1/" in first.log
    assert "image-service-password" not in first.log
    ran = podman_env("run", "--rm", f"oci-archive:{image}")
    assert ran.stdout.strip() == "hello from the registry"  # src/ is /step1/src in the image

    related = {**out, "workflow": "minimal", "step_id": "step1"}
    transfer = transfer_task(ssh_user_host, related, target_path=f"{site_folder}/{{{{ login }}}}",
                             inputs={"login_input": ssh_user_host.user})  # fmt: skip
    sent = Run(EflowsImageTransferExecutor(), transfer, transport=ssh_pool.get)
    home = Path("/home") / ssh_server.unprivileged_user
    on_site = home / site_folder / "orchtest" / image.name
    assert sent.outputs["image_file_path"] == str(on_site)
    assert sent.outputs["transferred"] == "true"
    assert on_site.read_bytes() == image.read_bytes() and sha256(on_site) == out["image_sha256"]
    assert "sha256 checked" in sent.log
    assert on_site.stat().st_uid == __import__("pwd").getpwnam("orchtest").pw_uid

    again = build(image_task(registry))
    assert again.outputs["built"] == "false" and again.outputs["image_path"] == str(image)
    assert "unchanged: not rebuilt" in again.log and "STEP" not in again.log
    resent = Run(EflowsImageTransferExecutor(), transfer, transport=ssh_pool.get)
    assert resent.outputs["transferred"] == "false"
    assert f"image {image.name} already on" in resent.log

    forced = build(image_task(registry, force=True))
    assert forced.outputs["built"] == "true" and "STEP 1/" in forced.log
    assert forced.outputs["image_hash"] == out["image_hash"]  # the same recipe, rebuilt
    after = Run(EflowsImageTransferExecutor(), transfer_task(
        ssh_user_host, forced.outputs, target_path=f"{site_folder}/{{{{ login }}}}",
        inputs={"login_input": "orchtest"}), transport=ssh_pool.get)  # fmt: skip
    assert after.result.ok, after.result.message
    assert sha256(on_site) == forced.outputs["image_sha256"] == sha256(image)

    # a changed src/ is another image
    (registry / "minimal" / "step1" / "src" / "hello.txt").write_text("changed\n")
    changed = build(image_task(registry))
    assert changed.outputs["built"] == "true"
    assert changed.outputs["image_hash"] != out["image_hash"]


def test_a_git_registry_is_cloned_and_builds_the_same_image(
    tmp_path: Path, podman_env: Podman
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    registry = tmp_path / "registry"
    write_step(registry)
    local = build(image_task(registry)).outputs
    git = ["git", "-C", str(registry), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(registry)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "registry"], check=True)
    url = f"file://{registry}"
    cloned = build(image_task(url))
    assert cloned.outputs["built"] == "false"  # the same recipe and files: the same hash
    assert cloned.outputs["image_hash"] == local["image_hash"]
    assert f"cloning the workflow registry {url}" in cloned.log
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    [clone] = (tmp_path / "cache" / "registries").glob(f"*/{commit}")
    assert (clone / "minimal" / "step1" / "spack.yaml").is_file()
    assert f"workflow registry at commit {commit[:12]}" in cloned.log
    # one clone per orch process: the next node of the deploy uses it
    missing = build(image_task(url, step="nope"))
    assert "cloning" not in missing.log
    assert missing.result.message.startswith(
        f"workflow minimal step nope is not in the workflow registry {url}")
    # a cloned recipe cannot take a file of orch's machine as its base
    outside = tmp_path / "outside.sif"
    outside.write_bytes(b"x")
    write_step(registry, "minimal", "step2", base=str(outside))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "step2"], check=True)
    eflows._CLONED.clear()  # a new orch process
    refused = build(image_task(url, step="step2"))
    assert "cloning" in refused.log
    assert refused.result.message == (
        f"minimal/step2/spack.yaml: orch.base {outside} is outside the step's folder and "
        "orch's image cache")
    # unreachable: the last clone is used, saying so
    shutil.rmtree(registry / ".git")
    eflows._CLONED.clear()
    offline = build(image_task(url))
    assert offline.outputs["built"] == "false"
    assert "cannot refresh the workflow registry" in offline.log
    broken = build(image_task(f"file://{tmp_path}/no-such-repo"))
    assert broken.result.status == "failed"
    assert "cannot clone the workflow registry" in broken.result.message


def test_a_password_in_a_registry_url_is_never_shown(tmp_path: Path) -> None:
    token = "s3cr3t-registry-token"
    url = f"http://someone:{token}@127.0.0.1:9/registry.git"  # nothing listens on port 9
    run = build(image_task(url))
    assert run.result.status == "failed"
    assert run.result.message.startswith(
        "cannot clone the workflow registry http://someone:*****@127.0.0.1:9/registry.git")
    assert token not in run.result.message + run.log
    assert not list((tmp_path / "cache" / "registries").glob("*/[0-9a-f]*"))


def test_a_src_link_out_of_the_registry_is_not_copied(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    folder = registry / "wf" / "step"
    folder.mkdir(parents=True)
    (folder / "spack.yaml").write_text("spack: {specs: []}\norch: {base: scratch}\n")
    (folder / "src").symlink_to("/etc")
    recipe = eflows.read_recipe(registry, "wf", "step", "reg")
    assert recipe.src is None
    props = eflows.image_properties(recipe, eflows.Machine(), builder="podman", base=None)
    assert props["files"] == {}
    (folder / "spack.yaml").unlink()
    (folder / "spack.yaml").symlink_to("/etc/hostname")
    with pytest.raises(ImageError, match="links out of the workflow registry reg"):
        eflows.read_recipe(registry, "wf", "step", "reg")


SPACK_STAND_IN = r"""#!/bin/sh
echo "spack $*" >> /spack-calls.log
env_dir=
if [ "$1" = -e ]; then env_dir=$2; shift 2; fi
case "$1" in
  concretize) test -f "$env_dir/spack.yaml" ;;
  install) mkdir -p /opt/views/view/bin ;;
  env) echo 'export PATH=/opt/views/view/bin:$PATH' ;;
  *) exit 2 ;;
esac
"""


def test_a_recipe_with_spack_specs_installs_them(tmp_path: Path, podman_env: Podman) -> None:
    """Spack cannot be installed here: the base holds a stand-in ``spack`` that records the
    commands orch's recipe runs (see tests/test_images.py)."""
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    busybox = static_busybox()
    for name in ("busybox", "sh"):
        shutil.copy2(busybox, base_dir / name)
    (base_dir / "spack").write_text(SPACK_STAND_IN)
    (base_dir / "spack").chmod(0o755)
    props = {"base": "scratch", "builder": "podman", "image_name": "spack-base",
             "files": {"busybox": "/bin/busybox", "sh": "/bin/sh",
                       "spack": "/usr/local/bin/spack"},
             "post": [INSTALL_BUSYBOX]}  # fmt: skip
    base_task = Task(deployment="d", node="b", instance="b/0", interface="Standard",
                     operation="create", implementation=Artifact("image", base_dir / "image"),
                     properties=props, base_dir=str(base_dir), timeout=300)  # fmt: skip
    context = RunContext(transport=lambda host: LocalTransport(), cancel=threading.Event(),
                         log=lambda stream, line: None)  # fmt: skip
    base = ImageExecutor().run(base_task, context)
    assert base.ok, base.message
    registry = tmp_path / "registry"
    folder = registry / "wf" / "step"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "run.py").write_text("print('hi')\n")
    (folder / "spack.yaml").write_text(yaml.safe_dump({
        "spack": {"specs": ["py-numpy"]},
        "orch": {"base": f"oci-archive:{base.outputs['image_path']}"}}))
    machine = {**MACHINE, "mpi": "openmpi@4"}
    run = build(image_task(registry, workflow="wf", step="step", machine=machine))
    image = run.outputs["image_path"]
    calls = podman_env("run", "--rm", "--entrypoint", "/bin/cat", f"oci-archive:{image}",
                       "/spack-calls.log", "/opt/spack-environment/spack.yaml",
                       "/step/src/run.py").stdout  # fmt: skip
    assert "spack -e /opt/spack-environment install --fail-fast" in calls
    assert "- py-numpy\n" in calls and "- openmpi@4\n" in calls and "x86_64" in calls
    assert calls.endswith("print('hi')\n")


def test_apptainer_builds_a_sif_for_singularity_machines(
    tmp_path: Path, apptainer: Path
) -> None:
    registry = tmp_path / "registry"
    write_step(registry)
    machine = {**MACHINE, "container_engine": "singularity"}
    run = build(image_task(registry, machine=machine))
    sif = Path(run.outputs["image_path"])
    assert sif.suffix == ".sif"
    ran = subprocess.run([str(apptainer), "run", str(sif)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert ran.stdout.strip() == "hello from the registry"


def test_transfer_folders_default_variables_and_standard_mode(
    tmp_path: Path, podman_env: Podman, ssh_server: SshServer, ssh_user_host: Host,
    ssh_pool: TransportPool, site_folder: str,
) -> None:
    registry = tmp_path / "registry"
    write_step(registry)
    built = build(image_task(registry, operation="start", interface="Standard")).outputs
    home = Path("/home") / ssh_server.unprivileged_user

    def transfer(target_path: str, **kwargs: Any) -> Run:
        task = transfer_task(ssh_user_host, {"image_path": built["image_path"],
                                             "image_id": built["image_id"]},
                             target_path=target_path, **kwargs)  # fmt: skip
        return Run(EflowsImageTransferExecutor(), task, transport=ssh_pool.get)

    # no target_path: the site's images folder (<work_dir>/images, orch-work without a site)
    default = transfer("")
    assert default.outputs["image_file_path"] == f"{home}/orch-work/images/{built['image_id']}"
    Path(default.outputs["image_file_path"]).unlink()
    with contextlib.suppress(OSError):
        Path(default.outputs["image_file_path"]).parent.rmdir()
    # $VARIABLES are the site's; the input wins over the property, as in the playbook
    variable = transfer("ignored", inputs={"target_path_input": f"$HOME/{site_folder}/img"})
    on_site = home / site_folder / "img" / built["image_id"]
    assert variable.outputs["image_file_path"] == str(on_site)
    assert sha256(on_site) == built["image_sha256"]
    # out of standard mode, Standard.start does nothing; submit transfers
    off = transfer(site_folder, run_in_standard_mode=False)
    assert off.result.ok and off.result.outputs == {}
    task = transfer_task(ssh_user_host, built, target_path=site_folder, operation="submit",
                         run_in_standard_mode=False)  # fmt: skip
    task = Task(**{**task.__dict__, "interface": "Runnable"})
    submitted = Run(EflowsImageTransferExecutor(), task, transport=ssh_pool.get)
    assert submitted.outputs["image_file_path"] == str(home / site_folder / built["image_id"])


def test_a_failing_step_build_fails_with_the_builders_last_lines(
    tmp_path: Path, podman_env: Podman
) -> None:
    registry = tmp_path / "registry"
    folder = write_step(registry)
    recipe = yaml.safe_load((folder / "spack.yaml").read_text())
    recipe["orch"]["post"].append("echo the step that breaks >&2; exit 7")
    (folder / "spack.yaml").write_text(yaml.safe_dump(recipe))
    run = build(image_task(registry))
    assert run.result.status == "failed"
    assert "image build failed on localhost" in run.result.message
    assert any("the step that breaks" in line for line in run.result.stdout_tail)
