"""What the end-to-end tests of eFlows4HPC topologies share: a workflow registry an offline
machine can build, the loopback Slurm site with the PyCOMPSs stand-in, Apptainer and a B2SHARE
stand-in's URL in its environment, and the services' secrets in orch's store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml
from sites.fixtures import SlurmSite
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


def set_secrets(orch: Orch) -> None:
    """The services' user names and passwords the topologies read with get_secret."""
    for path, field, value in SECRETS:
        subprocess.run([sys.executable, "-m", "orch", "secrets", "set", path, field],
                       input=value, text=True, check=True, cwd=orch.root, env=orch.env(),
                       capture_output=True)  # fmt: skip
