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
