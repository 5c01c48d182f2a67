"""One fixture for "an HPC site", whichever scheduler it runs: tests that must pass on every
scheduler take ``hpc_site`` (parametrised: the real Slurm site, then the real SGE site) and
write its sites.yaml entry with ``hpc_site.yaml(...)``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sites.cli import Orch, authorized_keys_file, site_yaml
from sites.slurm import PATH
from sites.sshd import SshServer

SCHEDULERS = ("slurm", "sge")


@dataclass
class HpcSite:
    scheduler: str
    ssh: SshServer
    site: Any
    """The SlurmSite or SgeSite."""
    environment: dict[str, str] = field(default_factory=dict)
    """What the site's sessions need in sites.yaml's environment (the scheduler's variables)."""
    path: str = PATH
    settings: dict[str, Any] = field(default_factory=dict)

    def yaml(self, token: str, name: str = "hpc1", *tool_dirs: Path, **settings: Any) -> str:
        """The site's entry in sites.yaml, its sessions finding ``tool_dirs`` first."""
        environment = {**self.environment, "PATH": ":".join([*map(str, tool_dirs), self.path])}
        environment.update(settings.pop("environment", {}))
        return site_yaml(self, token, name, scheduler=self.scheduler,  # type: ignore[arg-type]
                         environment=environment, **{**self.settings, **settings})

    def job_name(self, job_id: str) -> str:
        """The scheduler's name of a job it still knows or has accounted for."""
        if self.scheduler == "slurm":
            shown = self.site.cluster.run("scontrol", "-o", "show", "job", job_id).stdout
            return shown.split("JobName=", 1)[1].split()[0]
        deadline = time.monotonic() + 20  # SGE writes accounting a moment after the end
        while True:
            accounted = self.site.cluster.run("qacct", "-j", job_id, check=False)
            if accounted.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        return next(line.split()[1] for line in accounted.stdout.splitlines()
                    if line.startswith("jobname"))  # fmt: skip


def make_hpc_site(request: pytest.FixtureRequest, scheduler: str) -> HpcSite:
    if scheduler == "slurm":
        site = request.getfixturevalue("slurm_site")
        return HpcSite("slurm", site.ssh, site, {"SLURM_CONF": str(site.cluster.conf)},
                       settings={"partition": "debug"})  # fmt: skip
    site = request.getfixturevalue("sge_site")
    env = dict(site.cluster.env)
    path = env.pop("PATH")
    return HpcSite("sge", site.ssh, site, env, path, settings={"partition": "all.q"})


@pytest.fixture(params=SCHEDULERS)
def hpc_site(request: pytest.FixtureRequest) -> HpcSite:
    """The Slurm site, then the SGE site."""
    return make_hpc_site(request, request.param)


@pytest.fixture
def sge_hpc_site(request: pytest.FixtureRequest) -> HpcSite:
    """The SGE site alone, for what only SGE does."""
    return make_hpc_site(request, "sge")


def authorize(orch: Orch, ssh: SshServer) -> Iterator[str]:
    """A token whose key the site's unprivileged user accepts (for one test only)."""
    token = orch("credentials", "generate", "--comment", "orch hpc test").stdout.strip()
    public = orch("credentials", "public-key", token).stdout
    path = authorized_keys_file(ssh, ssh.unprivileged_user)
    before = path.read_text() if path.exists() else ""
    path.write_text(before + public)
    try:
        yield token
    finally:
        path.write_text(before)


@pytest.fixture
def hpc_credential(orch: Orch, hpc_site: HpcSite) -> Iterator[str]:
    yield from authorize(orch, hpc_site.ssh)


@pytest.fixture
def sge_credential(orch: Orch, sge_hpc_site: HpcSite) -> Iterator[str]:
    yield from authorize(orch, sge_hpc_site.ssh)


REPO = Path(__file__).resolve().parents[2]
JOB = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{ site: hpc1 }}
    work:
      type: orch.nodes.SlurmJob
      properties:
{properties}
      requirements:
        - host: login
"""


def job_blueprint(orch: Orch, **properties: object) -> Path:
    """``job.yaml``: one job node ``work`` with these properties, on site hpc1."""
    lines = "".join(f"        {key}: {value}\n" for key, value in properties.items())
    return orch.write("job.yaml", JOB.format(properties=lines.rstrip("\n")))


def copy_blueprint(orch: Orch, name: str) -> Path:
    """A shipped blueprint of ``blueprints/``, copied into the test's folder."""
    target = orch.root / name
    shutil.copytree(REPO / "blueprints" / name, target)
    return target / "blueprint.yaml"
