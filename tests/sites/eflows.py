"""What the end-to-end tests of eFlows4HPC topologies share: a workflow registry an offline
machine can build, the loopback Slurm site (and the SGE site: ``eflows_site``) with the PyCOMPSs
stand-in, Apptainer and a B2SHARE stand-in's URL in its environment, and the services' secrets
in orch's store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import STAND_IN, Orch, authorized_keys_file, site_yaml
from sites.fixtures import SlurmSite
from sites.hpc import SCHEDULERS, HpcSite, make_hpc_site
from sites.podman import static_busybox
from sites.slurm import PATH
from sites.web import Files, serve_files

WORDCOUNT = """\
import sys
words = open(sys.argv[1]).read().split()
print(f"wordcount: {len(words)} words")
"""
SECRETS = [
    ("/secret/data/services_secrets/image_creation", "user", "ic-user"),
    ("/secret/data/services_secrets/image_creation", "password", "ic-Secret-2024"),
    ("/secret/data/services_secrets/dls", "username", "dls-user"),
    ("/secret/data/services_secrets/dls", "password", "dls-Secret-2024"),
]


@pytest.fixture
def web() -> Iterator[tuple[str, Files]]:
    with serve_files() as served:
        yield served


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A workflow registry (``<workflow>/<step_id>/``) whose step holds the application in
    src/ and a recipe an offline machine can build (busybox from scratch, no Spack specs)."""
    step = tmp_path / "registry" / "minimal_workflow" / "wordcount"
    (step / "src").mkdir(parents=True)
    (step / "src" / "wordcount.py").write_text(WORDCOUNT)
    shutil.copy2(static_busybox(), step / "busybox")
    (step / "eflows4hpc.yaml").write_text(
        "spack: {specs: []}\n"
        "orch: {base: scratch, files: {busybox: /bin/busybox, busybox-sh: /bin/sh}}\n"
    )
    shutil.copy2(static_busybox(), step / "busybox-sh")
    return tmp_path / "registry"


@pytest.fixture
def site(orch: Orch, slurm_site: SlurmSite, credential: str, compss_bin: Path,
         apptainer: Path, web: tuple[str, Files]) -> SlurmSite:  # fmt: skip
    environment = {
        "PATH": f"{compss_bin}:{apptainer.parent}:{PATH}",
        "SLURM_CONF": str(slurm_site.cluster.conf),
        "B2SHARE_SERVER": web[0],
    }
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        slurm_site, credential, partition="debug", environment=environment
    ))  # fmt: skip
    return slurm_site


@pytest.fixture(params=SCHEDULERS)
def eflows_site(request: pytest.FixtureRequest, orch: Orch, credential: str, compss_bin: Path,
                apptainer: Path, web: tuple[str, Files]) -> Iterator[HpcSite]:  # fmt: skip
    """As ``site``, on the Slurm site, then on the SGE site: topologies run unchanged on
    either (sites.yaml names the scheduler). The credential is accepted by both."""
    yield from _eflows_site(request, request.param, orch, credential, compss_bin, apptainer, web)


@pytest.fixture
def sge_eflows_site(request: pytest.FixtureRequest, orch: Orch, credential: str,
                    compss_bin: Path, apptainer: Path,
                    web: tuple[str, Files]) -> Iterator[HpcSite]:  # fmt: skip
    """``eflows_site`` on the SGE site alone."""
    yield from _eflows_site(request, "sge", orch, credential, compss_bin, apptainer, web)


def _eflows_site(request: pytest.FixtureRequest, scheduler: str, orch: Orch, credential: str,
                 compss_bin: Path, apptainer: Path,
                 web: tuple[str, Files]) -> Iterator[HpcSite]:  # fmt: skip
    hpc = make_hpc_site(request, scheduler)
    path = authorized_keys_file(hpc.ssh, hpc.ssh.unprivileged_user)
    before = path.read_text() if path.exists() else None
    if hpc.scheduler != "slurm":
        public = orch("credentials", "public-key", credential).stdout
        path.write_text((before or "") + public)
    orch.write("sites.yaml", "sites:\n" + hpc.yaml(
        credential, "hpc1", compss_bin, apptainer.parent,
        environment={"B2SHARE_SERVER": web[0]}))  # fmt: skip
    try:
        yield hpc
    finally:
        if hpc.scheduler != "slurm":
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before)


LMOD_INIT = Path("/usr/share/lmod/lmod/init/sh")


@pytest.fixture
def lmod_site(orch: Orch, slurm_site: SlurmSite, credential: str, apptainer: Path,
              web: tuple[str, Files]) -> Iterator[Path]:  # fmt: skip
    """The site with the REAL Lmod (Debian's lmod) as its module system: enqueue_compss and
    apptainer are on no PATH until ``module load compss/3.0 singularity`` (the PyCOMPSs job
    type's default modules) puts them there, from modulefiles of this fixture. Yields the
    modulefiles' folder."""
    assert LMOD_INIT.is_file(), "Lmod is not installed: apt-get install lmod (tests/run.sh does)"
    root = Path(tempfile.mkdtemp(prefix="orch-lmod-"))
    root.chmod(0o755)
    tools, modules = root / "compss", root / "modulefiles"
    tools.mkdir()
    shutil.copy(STAND_IN, tools / "enqueue_compss")
    (tools / "enqueue_compss").chmod(0o755)
    for name, folder in (("compss/3.0", tools), ("singularity/4.1", apptainer.parent)):
        path = modules / f"{name}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'-- test module: {name}\nprepend_path("PATH", "{folder}")\n')
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tools / "enqueue_compss").chmod(0o755)
    environment = {
        "PATH": PATH,
        "MODULEPATH": str(modules),
        "SLURM_CONF": str(slurm_site.cluster.conf),
        "B2SHARE_SERVER": web[0],
    }
    orch.write("sites.yaml", "sites:\n" + site_yaml(
        slurm_site, credential, partition="debug", environment=environment
    ))  # fmt: skip
    try:
        yield modules
    finally:
        shutil.rmtree(root, ignore_errors=True)


def set_secrets(orch: Orch) -> None:
    """The services' user names and passwords the topologies read with get_secret."""
    for path, field, value in SECRETS:
        subprocess.run([sys.executable, "-m", "orch", "secrets", "set", path, field],
                       input=value, text=True, check=True, cwd=orch.root, env=orch.env(),
                       capture_output=True)  # fmt: skip


# -- more applications, sites and servers, for the topologies of tests/test_eflows_topologies.py

APPS = {
    # words of a file; the count written to a second file when given
    "count.py": """\
import os, sys
words = open(sys.argv[1]).read().split()
print(f"count: {len(words)} words")
if len(sys.argv) > 2:
    os.makedirs(os.path.dirname(sys.argv[2]) or ".", exist_ok=True)
    open(sys.argv[2], "w").write(f"{len(words)}\\n")
""",
    # reads what count.py wrote
    "report.py": """\
import sys
count = int(open(sys.argv[1]).read())
print(f"report: {count} words, {count * 2} doubled")
open(sys.argv[2], "w").write(f"words={count}\\n")
""",
    # a "model" (name=..., weight=...) applied to a data file
    "model.py": """\
import sys
model = dict(line.split("=", 1) for line in open(sys.argv[1]).read().split())
words = open(sys.argv[2]).read().split()
print(f"model {model['name']}: score {len(words) * int(model['weight'])}")
""",
}
APPS_WORKFLOW, APPS_STEP = "eflows_apps", "apps"
DAV_USER, DAV_PASSWORD = "dav-user", "dav-Secret-4711"
DAV_SECRET = "/secret/data/services_secrets/webdav"


def registry_step(registry: Path, workflow: str, step: str, sources: dict[str, str]) -> Path:
    """A step ``<registry>/<workflow>/<step>/`` whose src/ holds ``sources``, built offline as
    the ``registry`` fixture's (busybox from scratch); the application lands in
    ``/<step>/src/`` of the image."""
    folder = registry / workflow / step
    (folder / "src").mkdir(parents=True, exist_ok=True)
    for name, code in sources.items():
        (folder / "src" / name).write_text(code)
    for name in ("busybox", "busybox-sh"):
        shutil.copy2(static_busybox(), folder / name)
    (folder / "eflows4hpc.yaml").write_text(
        "spack: {specs: []}\n"
        "orch: {base: scratch, files: {busybox: /bin/busybox, busybox-sh: /bin/sh}}\n"
    )
    return folder


@pytest.fixture
def apps_registry(registry: Path) -> Path:
    """The ``registry`` with one more step, ``eflows_apps/apps``: the APPS."""
    registry_step(registry, APPS_WORKFLOW, APPS_STEP, APPS)
    return registry


def set_secret(orch: Orch, path: str, field: str, value: str) -> None:
    subprocess.run([sys.executable, "-m", "orch", "secrets", "set", path, field],
                   input=value, text=True, check=True, cwd=orch.root, env=orch.env(),
                   capture_output=True)  # fmt: skip


@pytest.fixture
def dav() -> Iterator[tuple[str, Path]]:
    """A WebDAV server (WsgiDAV, basic auth DAV_USER/DAV_PASSWORD): (its URL, its folder)."""
    from sites.web import serve_webdav

    with serve_webdav(DAV_USER, DAV_PASSWORD) as served:
        yield served


def site_environment(
    site: SlurmSite, compss_bin: Path, apptainer: Path, web_base: str, **more: str
) -> dict[str, str]:
    """What a test site's sessions need: enqueue_compss, apptainer, its Slurm, B2SHARE."""
    return {
        "PATH": f"{compss_bin}:{apptainer.parent}:{PATH}",
        "SLURM_CONF": str(site.cluster.conf),
        "B2SHARE_SERVER": web_base,
        **more,
    }


@pytest.fixture
def two_sites(
    orch: Orch,
    eflows_site: HpcSite,
    second_slurm_site: SlurmSite,
    credential: str,
    compss_bin: Path,
    apptainer: Path,
    web: tuple[str, Files],
) -> Iterator[None]:
    """sites.yaml with hpc1 (``eflows_site``: Slurm, then SGE) and the second loopback Slurm
    site hpc2, the credential accepted by the second one too (for this test only)."""
    from sites.cli import authorized_keys_file

    public = orch("credentials", "public-key", credential).stdout
    path = authorized_keys_file(second_slurm_site.ssh, second_slurm_site.ssh.unprivileged_user)
    before = path.read_text() if path.exists() else None
    path.write_text((before or "") + public)
    entries = eflows_site.yaml(credential, "hpc1", compss_bin, apptainer.parent,
                               environment={"B2SHARE_SERVER": web[0]})  # fmt: skip
    entries += site_yaml(
        second_slurm_site,
        credential,
        name="hpc2",
        partition="debug",
        environment=site_environment(second_slurm_site, compss_bin, apptainer, web[0]),
    )
    orch.write("sites.yaml", "sites:\n" + entries)
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before)
