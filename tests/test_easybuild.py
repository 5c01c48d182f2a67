"""EasyBuild easyconfigs as a recipe kind of images (``orch.images.easybuild``).

Real EasyBuild (``easybuild-framework`` + ``easybuild-easyblocks``, the ``test`` extra) and real
Lmod (``apt-get install lmod``, tests/run.sh does it) build a toy easyconfig from a source
tarball the test writes (a static C program, so that it runs in an image of busybox alone).
The images are built for real with podman (and Apptainer when installed) from ``scratch`` with a
static busybox: nothing is pulled, so EasyBuild runs on orch's machine (``easybuild_on:
local``) and its tree is copied in; the in-image kind (``easybuild_on: image``) is checked on
its recipe text and on the message of a base without eb.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Blueprints
from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.eflows_images import EflowsImageExecutor
from orch.executors.images import ImageExecutor
from orch.images import easybuild, eflows
from orch.images.context import compose
from orch.images.spec import ImageError, image_spec
from orch.transport.local import LocalTransport
from sites.podman import Podman, static_busybox

GREETING = "hello from easybuild"
INSTALL_BUSYBOX = "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin && /bin/busybox --install -s"
HELLO_EB = """\
easyblock = 'ConfigureMake'
name = 'hello'
version = '1.0'
homepage = 'https://example.org'
description = 'toy'
toolchain = SYSTEM
sources = ['hello-1.0.tar.gz']
skipsteps = ['configure']
installopts = 'PREFIX=%(installdir)s'
sanity_check_paths = {'files': ['bin/hello'], 'dirs': []}
"""
BROKEN_EB = HELLO_EB.replace("'hello'", "'broken'").replace(
    "skipsteps", "prebuildopts = 'echo the broken build step runs && exit 3 && '\nskipsteps")
LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
INSTALL = ("install them with `pip install easybuild-framework easybuild-easyblocks` (orch's "
           "test extra: `sh install.sh --test`) and `apt-get install lmod` (tests/run.sh does "
           "both)")  # fmt: skip
MACHINE = {"platform": "linux/amd64", "architecture": "x86_64", "container_engine": "podman",
           "mpi": "", "gpu": "none"}  # fmt: skip


@pytest.fixture(scope="session")
def eb_installed() -> Path:
    """eb and Lmod on this machine: a test needing them fails (not skips) without them,
    saying how to install them."""
    try:
        eb = easybuild.find_eb()
        easybuild.eb_environment(eb)
    except ImageError as exc:
        pytest.fail(f"EasyBuild tests need eb and Lmod: {exc}; {INSTALL}")
    if not LMOD_INIT.is_file():
        pytest.fail(f"Lmod's {LMOD_INIT} is missing: {INSTALL}")
    gcc = shutil.which("gcc")
    libc = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True,
                          timeout=30).stdout.strip() if gcc else ""
    if not gcc or not Path(libc).is_absolute():
        pytest.fail("the toy easyconfig needs gcc and a static libc: apt-get install gcc "
                    "libc6-dev")  # fmt: skip
    return eb


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own orch cache (images and EasyBuild trees)."""
    monkeypatch.setenv("ORCH_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(eflows.REGISTRY_ENV, raising=False)
    return tmp_path / "cache"


def write_toy(folder: Path, *, broken: bool = False) -> tuple[Path, Path]:
    """``folder/<name>-1.0.eb`` and ``folder/sources/hello-1.0.tar.gz`` (a static hello)."""
    tree = folder / "tarball" / "hello-1.0"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "hello.c").write_text(
        f'#include <stdio.h>\nint main(){{puts("{GREETING}");return 0;}}\n')
    (tree / "Makefile").write_text(
        "all:\n\tgcc -static -o hello hello.c\n"
        "install:\n\tmkdir -p $(PREFIX)/bin && cp hello $(PREFIX)/bin/\n")
    sources = folder / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sources / "hello-1.0.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname="hello-1.0")
    shutil.rmtree(folder / "tarball")
    easyconfig = folder / ("broken-1.0.eb" if broken else "hello-1.0.eb")
    easyconfig.write_text(BROKEN_EB if broken else HELLO_EB)
    return easyconfig, sources


class Lines(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


# -- EasyBuild on orch's machine --------------------------------------------------------------


def test_eb_builds_a_module_that_module_load_runs_and_a_second_build_is_cached(
    tmp_path: Path, eb_installed: Path
) -> None:
    easyconfig, sources = write_toy(tmp_path / "toy")
    prefix = tmp_path / "opt-easybuild"  # the prefix as the software will see it
    spec = easybuild.EasyBuildSpec((easyconfig,), sources, "local", str(prefix))
    log = Lines()
    started = time.monotonic()
    tree = easybuild.ensure_built(spec, log, threading.Event(), 120)
    first = time.monotonic() - started
    assert tree.parent == tmp_path / "cache" / "easybuild"
    assert "EasyBuild: building hello-1.0.eb on orch's machine" in log.text
    assert "COMPLETED: Installation ended successfully" in log.text  # eb's own output
    module = (tree / "modules" / "all" / "hello" / "1.0.lua").read_text()
    assert f'local root = "{prefix}/software/hello/1.0"' in module  # relocated
    assert str(tree) not in module and not (tree / "software" / ".locks").exists()
    assert os.readlink(tree / "modules" / "base" / "hello" / "1.0.lua") == "../../all/hello/1.0.lua"
    # what the image's COPY does: the tree at the prefix, then Lmod as users run it
    prefix.symlink_to(tree)
    ran = subprocess.run(
        ["bash", "-c", f"source {LMOD_INIT} && module use {prefix}/modules/all && "
         "module load hello/1.0 && echo \"$EBROOTHELLO\" && hello"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                         "HOME": str(tmp_path)})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [f"{prefix}/software/hello/1.0", GREETING]

    again = Lines()
    started = time.monotonic()
    assert easybuild.ensure_built(spec, again, threading.Event(), 120) == tree
    assert time.monotonic() - started < min(first, 0.5)
    assert again == [f"EasyBuild: hello-1.0.eb unchanged: not rebuilt (in the cache: {tree})"]


def test_a_failing_easyconfig_is_named_with_the_last_lines_of_ebs_log(
    tmp_path: Path, eb_installed: Path
) -> None:
    easyconfig, sources = write_toy(tmp_path / "toy", broken=True)
    spec = easybuild.EasyBuildSpec((easyconfig,), sources, "local", "/opt/easybuild")
    log = Lines()
    with pytest.raises(ImageError) as failed:
        easybuild.ensure_built(spec, log, threading.Event(), 120)
    message = str(failed.value)
    first, *rest = message.splitlines()
    assert first.startswith("EasyBuild failed to build broken-1.0.eb on orch's machine "
                            "(eb exit status ")  # fmt: skip
    assert "failed with exit code 3 in build step for broken-1.0.eb" in first
    kept = next((tmp_path / "cache" / "easybuild" / "logs").glob("easybuild-broken-1.0-*.log"))
    assert rest[0] == f"last lines of eb's log ({kept}):"
    assert 3 <= len(rest[1:]) <= easybuild.LOG_LINES
    assert "ERROR EasyBuild encountered an error" in rest[-1]
    assert any("exit 3" in line for line in rest[1:])  # the command that failed
    assert not list((tmp_path / "cache" / "easybuild").glob("easybuild-*"))  # nothing cached
    assert not list((tmp_path / "cache" / "easybuild").glob(".eb-*"))  # work folder removed


def test_without_eb_the_message_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(easybuild.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ImageError, match=r"EasyBuild's eb is not on orch's machine .* `pip "
                       r"install easybuild-framework easybuild-easyblocks`"):
        easybuild.find_eb()


# -- images -----------------------------------------------------------------------------------


def image_props(folder: Path, **more: Any) -> dict[str, Any]:
    """A ContainerImage from scratch with busybox and the toy easyconfig, eb run locally."""
    busybox = static_busybox()
    shutil.copy2(busybox, folder / "busybox")
    shutil.copy2(busybox, folder / "sh")
    return {
        "base": "scratch", "builder": "podman", "image_name": "hello-eb",
        "files": {"busybox": "/bin/busybox", "sh": "/bin/sh"},
        "post": [INSTALL_BUSYBOX],
        "easyconfigs": ["toy/hello-1.0.eb"], "easybuild_sources": "toy/sources",
        "easybuild_on": "local",
        "runscript": 'echo "MODULEPATH=$MODULEPATH" && '
                     "cat /opt/easybuild/modules/all/hello/1.0.lua | grep 'local root' && "
                     "/opt/easybuild/software/hello/1.0/bin/hello",
        **more,
    }  # fmt: skip


def run_image(task: Task, *, executor: Any = None, force: bool = False) -> tuple[
        OperationResult, str]:
    lines = Lines()
    context = RunContext(transport=lambda host: LocalTransport(), cancel=threading.Event(),
                         log=lambda stream, line: lines.append(line), force_rebuild=force)
    return (executor or ImageExecutor()).run(task, context), lines.text


def image_task(folder: Path, props: dict[str, Any]) -> Task:
    return Task(deployment="eb", node="app", instance="app/0", interface="Standard",
                operation="create", implementation=Artifact("image", folder / "image"),
                host=Host("localhost"), properties=props, base_dir=str(folder), timeout=300)


EXPECTED_RUN = ["MODULEPATH=/opt/easybuild/modules/all",
                'local root = "/opt/easybuild/software/hello/1.0"', GREETING]  # fmt: skip


def test_a_container_image_gets_the_easybuild_software_once(
    tmp_path: Path, eb_installed: Path, podman_env: Podman
) -> None:
    write_toy(tmp_path / "toy")
    props = image_props(tmp_path)
    first, log = run_image(image_task(tmp_path, props))
    assert first.ok, f"{first.message}\n{log}"
    assert "EasyBuild: building hello-1.0.eb" in log and "STEP 1/" in log
    path = first.outputs["image_path"]
    ran = podman_env("run", "--rm", f"oci-archive:{path}")
    assert ran.stdout.splitlines() == EXPECTED_RUN

    started = time.monotonic()
    second, log = run_image(image_task(tmp_path, props))
    assert second.ok and second.outputs["built"] == "false"
    assert second.outputs["image_hash"] == first.outputs["image_hash"]
    assert "EasyBuild: hello-1.0.eb unchanged: not rebuilt" in log
    assert "unchanged: not rebuilt" in log.splitlines()[-1] and "STEP" not in log
    assert time.monotonic() - started < 2


def test_in_the_image_build_eb_runs_there_and_a_base_without_it_says_so(
    tmp_path: Path, podman_env: Podman
) -> None:
    write_toy(tmp_path / "toy")
    props = image_props(tmp_path, easybuild_on="image", easybuild_options=["--debug"])
    spec = image_spec(props, "app", str(tmp_path))
    assert spec.easybuild is not None and spec.easybuild.on == "image"
    applied = easybuild.apply(spec, print, threading.Event(), None)
    text = compose(applied, str(tmp_path)).recipe
    assert 'COPY ["toy/hello-1.0.eb", "/opt/easybuild/easyconfigs/hello-1.0.eb"]' in text
    assert 'COPY ["toy/sources", "/opt/easybuild/sources"]' in text
    assert 'ENV MODULEPATH="/opt/easybuild/modules/all${MODULEPATH:+:$MODULEPATH}"' in text
    assert ("--robot-paths=/opt/easybuild/easyconfigs: --robot "
            "--sourcepath=/opt/easybuild/sources --debug "
            "/opt/easybuild/easyconfigs/hello-1.0.eb") in text  # fmt: skip
    # eb runs before the image's own post steps
    assert text.index("command -v eb") < text.index("/bin/busybox --install")
    apptainer = compose(easybuild.apply(image_spec({**props, "builder": "apptainer"}, "app",
                                                   str(tmp_path)), print, threading.Event(),
                                        None), str(tmp_path)).recipe  # fmt: skip
    assert "toy/hello-1.0.eb /opt/easybuild/easyconfigs/hello-1.0.eb" in apptainer
    assert 'export MODULEPATH="/opt/easybuild/modules/all${MODULEPATH:+:$MODULEPATH}"' in apptainer

    # a busybox base has no eb: the build fails saying so (busybox is installed by post,
    # which runs after eb: give it as the image's first step for this check)
    failed, log = run_image(image_task(tmp_path, {**props, "post": []}))
    assert failed.status == "failed"
    assert "orch: EasyBuild (eb) is not in the base image" in log


def test_settings_are_checked(tmp_path: Path) -> None:
    write_toy(tmp_path / "toy")
    base = {"base": "scratch", "builder": "podman"}
    with pytest.raises(ImageError, match=r"easyconfigs: toy/nothing.eb does not exist"):
        image_spec({**base, "easyconfigs": ["toy/nothing.eb"]}, "app", str(tmp_path))
    with pytest.raises(ImageError, match="is not an easyconfig"):
        image_spec({**base, "easyconfigs": ["toy/sources/hello-1.0.tar.gz"]}, "app",
                   str(tmp_path))
    with pytest.raises(ImageError, match="easybuild_on must be image or local"):
        image_spec({**base, "easyconfigs": ["toy"], "easybuild_on": "site"}, "app",
                   str(tmp_path))
    with pytest.raises(ImageError, match="easybuild_prefix 'opt' must be an absolute folder"):
        image_spec({**base, "easyconfigs": ["toy"], "easybuild_prefix": "opt"}, "app",
                   str(tmp_path))
    folder = image_spec({**base, "easyconfigs": ["toy"]}, "app", str(tmp_path)).easybuild
    assert [f.name for f in folder.easyconfigs] == ["hello-1.0.eb"]  # a folder's *.eb
    given = image_spec({**base, "easyconfigs": ["toy"], "recipe": "FROM scratch\n"}, "app",
                       str(tmp_path))  # fmt: skip
    with pytest.raises(ImageError, match="easyconfigs go with a generated recipe"):
        easybuild.apply(given, print, threading.Event(), None)
    assert image_spec(base, "app", str(tmp_path)).easybuild is None


# -- eFlows4HPC registry steps ----------------------------------------------------------------


def write_step(registry: Path, *, on: str = "local") -> Path:
    """``registry/minimal/step1``: eflows4hpc.yaml (scratch + busybox) and ``easybuild/``."""
    folder = registry / "minimal" / "step1"
    write_toy(folder / "easybuild")
    busybox = static_busybox()
    shutil.copy2(busybox, folder / "busybox")
    shutil.copy2(busybox, folder / "busybox-sh")
    recipe = {"orch": {
        "base": "scratch", "files": {"busybox": "/bin/busybox", "busybox-sh": "/bin/sh"},
        "post": [INSTALL_BUSYBOX], "easybuild": {"on": on},
        "runscript": image_props(folder)["runscript"],
    }}  # fmt: skip
    (folder / "eflows4hpc.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def eflows_task(registry: Path, builder: str = "podman") -> Task:
    machine = {**MACHINE, "container_engine": builder}
    return Task(deployment="eflows", node="ImageCreation", instance="ImageCreation/0",
                interface="Runnable", operation="submit",
                implementation=Artifact("eflows-image", Path("eflows-image")),
                environment={eflows.REGISTRY_ENV: str(registry)},
                properties={"workflow": "minimal", "step_id": "step1", "machine": machine,
                            "force": False}, timeout=300)  # fmt: skip


def test_a_registry_steps_easybuild_folder_becomes_properties(tmp_path: Path) -> None:
    folder = write_step(tmp_path / "registry")
    recipe = eflows.read_recipe(tmp_path / "registry", "minimal", "step1", "registry")
    assert recipe.easybuild == folder / "easybuild"
    props = eflows.image_properties(recipe, eflows.Machine(), builder="podman", base=None)
    assert props["easyconfigs"] == [str(folder / "easybuild")]
    assert props["easybuild_sources"] == str(folder / "easybuild" / "sources")
    assert props["easybuild_on"] == "local"
    lines = eflows.say_lines(recipe, eflows.Machine(), None)
    assert "EasyBuild easyconfigs (easybuild/): hello-1.0.eb; eb runs on orch's machine" in lines
    for eb in (folder / "easybuild").glob("*.eb"):
        eb.unlink()
    recipe = eflows.read_recipe(tmp_path / "registry", "minimal", "step1", "registry")
    with pytest.raises(ImageError, match=r"orch.easybuild is set but the step has no "
                       r"easybuild/\*.eb easyconfigs"):
        eflows.image_properties(recipe, eflows.Machine(), builder="podman", base=None)


def test_a_registry_step_with_easyconfigs_builds_an_image_with_the_software(
    tmp_path: Path, eb_installed: Path, podman_env: Podman
) -> None:
    write_step(tmp_path / "registry")
    result, log = run_image(eflows_task(tmp_path / "registry"), executor=EflowsImageExecutor())
    assert result.ok, f"{result.message}\n{log}"
    assert "eb runs on orch's machine" in log and "EasyBuild: building hello-1.0.eb" in log
    ran = podman_env("run", "--rm", f"oci-archive:{result.outputs['image_path']}")
    assert ran.stdout.splitlines() == EXPECTED_RUN
    again, log = run_image(eflows_task(tmp_path / "registry"), executor=EflowsImageExecutor())
    assert again.ok and again.outputs["built"] == "false"
    assert "EasyBuild: hello-1.0.eb unchanged: not rebuilt" in log


def test_a_registry_step_with_easyconfigs_builds_with_apptainer(
    tmp_path: Path, eb_installed: Path, apptainer: Path
) -> None:
    write_step(tmp_path / "registry")
    result, log = run_image(eflows_task(tmp_path / "registry", "singularity"),
                            executor=EflowsImageExecutor())  # fmt: skip
    assert result.ok, f"{result.message}\n{log}"
    sif = result.outputs["image_path"]
    assert sif.endswith(".sif")
    ran = subprocess.run([str(apptainer), "run", sif], capture_output=True, text=True,
                         timeout=120, env={"PATH": f"{apptainer.parent}:/usr/bin:/bin"})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == EXPECTED_RUN


def test_a_registry_step_failing_in_eb_names_the_easyconfig(
    tmp_path: Path, eb_installed: Path
) -> None:
    folder = write_step(tmp_path / "registry")
    write_toy(folder / "easybuild", broken=True)
    result, log = run_image(eflows_task(tmp_path / "registry"), executor=EflowsImageExecutor())
    assert result.status == "failed" and not result.ok
    assert result.message.startswith("EasyBuild failed to build broken-1.0.eb on orch's machine")
    assert "last lines of eb's log" in result.message
    assert "the broken build step runs" in log  # eb's output streamed to the log


TYPES_BLUEPRINT = """
imports:
  - orch-hpc:1.0.0
topology_template:
  node_templates:
    app:
      type: orch.nodes.ContainerImage
      properties:
        base: rockylinux:9
        easyconfigs: [easyconfigs/GROMACS-2023.3-foss-2023a.eb]
        easybuild_on: %s
        easybuild_options: [--try-toolchain=foss,2023b]
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
    gromacs:
      type: orch.nodes.EasyBuildSoftware
      properties:
        easyconfigs: [GROMACS-2023.3-foss-2023a.eb]
        eb_modules: [EasyBuild]
      requirements:
        - host: login
"""


def test_the_types_validate(bp: Blueprints) -> None:
    assert bp.check(TYPES_BLUEPRINT % "image").ok
    wrong = bp.check(TYPES_BLUEPRINT % "cloud")
    assert not wrong.ok and "cloud" in wrong.describe()


# -- software built on the site (orch.nodes.EasyBuildSoftware) --------------------------------


def software_task(folder: Path, host: Host, site: Any, eb: Path, *, broken: bool = False) -> Task:
    """The toy easyconfig to build on the site, with the eb of orch's test environment (the
    site is this machine, through the test sshd)."""
    props = {"easyconfigs": ["toy/broken-1.0.eb" if broken else "toy/hello-1.0.eb"],
             "sources": "toy/sources", "eb": str(eb)}  # fmt: skip
    return Task(deployment="eb", node="hello", instance="hello/0", interface="Standard",
                operation="create", implementation=Artifact("easybuild", folder / "easybuild"),
                host=host, properties=props, base_dir=str(folder), site=site, timeout=300)


def run_software(task: Task, pool: Any) -> tuple[OperationResult, str]:
    from orch.executors.easybuild import EasyBuildExecutor

    lines = Lines()
    context = RunContext(transport=pool.get, cancel=threading.Event(),
                         log=lambda stream, line: lines.append(line))
    return EasyBuildExecutor().run(task, context), lines.text


def test_software_is_built_on_the_site_once_through_its_module_system(
    tmp_path: Path, eb_installed: Path, ssh_host: Host, ssh_pool: Any
) -> None:
    from orch.executors.registry import load_executors
    from orch.sites.config import Site
    from orch.sites.modules import MODULE_INIT

    assert "easybuild" in [executor.name for executor in load_executors()]
    write_toy(tmp_path / "toy")
    write_toy(tmp_path / "toy", broken=True)
    work = tmp_path / "site"
    site = Site("hpc1", "127.0.0.1", ssh_host.port, "root", work_dir=str(work))
    task = software_task(tmp_path, ssh_host, site, eb_installed)
    first, log = run_software(task, ssh_pool)
    assert first.ok, f"{first.message}\n{log}"
    modulepath = f"{work}/easybuild/modules/all"
    assert first.outputs == {"modulepath": modulepath, "modules": "hello/1.0", "built": "true"}
    assert "COMPLETED: Installation ended successfully" in log  # eb's output, streamed
    assert (work / "eb" / "hello" / "easyconfigs" / "hello-1.0.eb").is_file()  # uploaded
    ran = ssh_pool.get(ssh_host).run(
        f"{MODULE_INIT}\nmodule use {modulepath} && module load hello/1.0 && hello", timeout=60)
    assert (ran.rc, ran.stdout.strip()) == (0, GREETING)

    started = time.monotonic()
    second, log = run_software(task, ssh_pool)
    assert second.ok and second.outputs["built"] == "false"
    assert "EasyBuild: hello/1.0 already available on root@127.0.0.1:" in log
    assert "not built" in log and "COMPLETED" not in log  # eb did not run
    assert time.monotonic() - started < 2

    broken, log = run_software(software_task(tmp_path, ssh_host, site, eb_installed,
                                             broken=True), ssh_pool)  # fmt: skip
    assert broken.status == "failed"
    assert broken.message.startswith("EasyBuild failed to build broken-1.0.eb on "
                                     "root@127.0.0.1:")  # fmt: skip
    assert "failed with exit code 3 in build step" in broken.message
    assert "eb's log on the site: " in broken.message
    assert "ERROR EasyBuild encountered an error" in broken.stdout_tail[-1]
    assert any("exit 3" in line for line in broken.stdout_tail)

    missing = software_task(tmp_path, ssh_host, site, tmp_path / "nowhere" / "eb", broken=True)
    failed, _ = run_software(missing, ssh_pool)
    assert failed.status == "failed"
    assert failed.message.startswith(f"EasyBuild's {tmp_path}/nowhere/eb is not found on "
                                     "root@127.0.0.1:")  # fmt: skip


def test_module_names_follow_easybuilds_default_naming() -> None:
    from orch.executors.easybuild import Failed, module_name

    assert module_name("hello-1.0.eb") == "hello/1.0"
    assert module_name("toy/GROMACS-2023.3-foss-2023a.eb") == "GROMACS/2023.3-foss-2023a"
    assert module_name("Score-P-8.4-gompi-2023b.eb") == "Score-P/8.4-gompi-2023b"
    with pytest.raises(Failed, match="give the node's modules property"):
        module_name("noversion.eb")
