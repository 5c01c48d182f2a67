"""Batch jobs on a PBS site. PBS Professional cannot be installed on the test machine: the site
is the test sshd with a STAND-IN of PBS's documented qsub / qstat -f -F json -x / qdel
(tests/sites/pbs: jobs start at once as the user's background processes, no scheduling). What is
tested is orch's side: the #PBS script, the status query, the exit status and output, the
blueprints unchanged, what PBS cannot honour, a server that goes away mid-run."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.cli import Orch, site_yaml, wait_until
from sites.fixtures import SlurmSite
from sites.hpc import HpcSite, authorize, copy_blueprint
from sites.hpc import job_blueprint as job
from sites.pbs import PbsBin
from sites.slurm import PATH
from sites.sshd import SshServer


@pytest.fixture
def pbs_site(ssh_server: SshServer, pbs_bin: PbsBin) -> HpcSite:
    return HpcSite("pbs", ssh_server, pbs_bin, dict(pbs_bin.env), f"{pbs_bin.bin}:{PATH}")


@pytest.fixture
def pbs_credential(orch: Orch, pbs_site: HpcSite) -> Iterator[str]:
    yield from authorize(orch, pbs_site.ssh)


def qstat(pbs: PbsBin, job_id: str) -> dict:
    shown = subprocess.run(["qstat", "-f", "-F", "json", "-x", job_id], env=pbs.environ(),
                           capture_output=True, text=True, check=True)  # fmt: skip
    return next(iter(json.loads(shown.stdout)["Jobs"].values()))


def test_the_mpi_apptainer_blueprint_runs_unchanged_on_a_pbs_site(
    orch: Orch, pbs_site: HpcSite, pbs_credential: str, apptainer: Path
) -> None:
    orch.write("sites.yaml", "sites:\n" + pbs_site.yaml(pbs_credential, "hpc1",
                                                        apptainer.parent))  # fmt: skip
    blueprint = copy_blueprint(orch, "mpi-apptainer")
    orch("deploy", str(blueprint), "--poll-interval", "0.5", "-i", "ranks=2", timeout=180)
    outputs = json.loads(orch("outputs", "mpi-apptainer", "-f", "json").stdout)
    lines = sorted(Path(outputs["output"]).read_text().splitlines())
    assert [line.split(" in ")[0] for line in lines] == [f"rank {i} of 2" for i in range(2)]
    script = (Path(outputs["output"]).parent / "ranks.pbs").read_text()
    assert "#PBS -l select=1:ncpus=2:mpiprocs=2" in script
    assert "mpirun -np 2 /bin/sh -c" in script and 'cd "$PBS_O_WORKDIR"' in script
    job = qstat(pbs_site.site, str(outputs["job_id"]))
    assert job["Job_Name"] == "ranks" and job["Exit_status"] == 0
    assert re.fullmatch(r"\d+\.standin", str(outputs["job_id"]))


def test_two_sites_one_pbs_one_slurm(
    orch: Orch, pbs_site: HpcSite, slurm_site: SlurmSite, credential: str
) -> None:
    """The two-sites blueprint, its simulation on the PBS site and its analysis on Slurm."""
    public = orch("credentials", "public-key", credential).stdout
    from sites.cli import authorized_keys_file

    keys = authorized_keys_file(pbs_site.ssh, pbs_site.ssh.unprivileged_user)
    before = keys.read_text() if keys.exists() else ""
    keys.write_text(before + public)
    try:
        slurm = site_yaml(slurm_site, credential, "hpc2", partition="debug",
                          environment={"SLURM_CONF": str(slurm_site.cluster.conf)})
        orch.write("sites.yaml", "sites:\n" + pbs_site.yaml(credential, "hpc1") + slurm)
        blueprint = copy_blueprint(orch, "two-sites")
        orch("deploy", str(blueprint), "--poll-interval", "0.5", timeout=180)
    finally:
        keys.write_text(before)
    results = blueprint.parent / "results"
    ranks = sorted(p.read_text() for p in (results / "simulation").glob("rank-*.txt"))
    assert [re.sub(r" on .*", "", r.strip()) for r in ranks] == ["rank 0 of 2", "rank 1 of 2"]
    assert (results / "analysis" / "summary.txt").read_text().splitlines()[-1] == (
        "sample 3: mean 21")


def test_a_failing_pbs_job_reports_its_exit_status_and_last_lines(
    orch: Orch, pbs_site: HpcSite, pbs_credential: str
) -> None:
    orch.write("sites.yaml", "sites:\n" + pbs_site.yaml(pbs_credential, "hpc1"))
    blueprint = job(orch, script="'echo first; echo the-last-words >&2; exit 4'")
    failed = orch("deploy", str(blueprint), "--poll-interval", "0.3", check=4, timeout=120)
    assert "ended FAILED: exit code 4" in failed.stderr, failed.stderr
    assert "the-last-words" in failed.stderr + orch("logs", "job").stdout


def test_qos_is_refused_on_a_pbs_site_naming_site_and_option(
    orch: Orch, pbs_site: HpcSite, pbs_credential: str
) -> None:
    orch.write("sites.yaml", "sites:\n" + pbs_site.yaml(pbs_credential, "hpc1"))
    blueprint = job(orch, command="true", qos="high")
    failed = orch("deploy", str(blueprint), "--poll-interval", "0.3", check=4, timeout=120)
    assert "site hpc1 runs PBS, which cannot honour qos: 'high'" in failed.stderr
    assert not list(pbs_site.site.spool.glob("*.json")), "nothing submitted"


def test_a_pbs_server_that_goes_away_mid_run_is_asked_again_and_the_job_watched_once(
    orch: Orch, pbs_site: HpcSite, pbs_credential: str
) -> None:
    pbs: PbsBin = pbs_site.site
    orch.write("sites.yaml", "sites:\n" + pbs_site.yaml(pbs_credential, "hpc1"))
    marker = Path(f"/tmp/orch-pbs-ran-{uuid.uuid4().hex[:8]}")  # the site user writes it
    blueprint = job(orch, script=f"'echo ran >> {marker}; sleep 4'")
    running = orch.start("deploy", str(blueprint), "--poll-interval", "0.3")
    wait_until(marker.exists, "the job to start", timeout=60)
    pbs.down(True)
    time.sleep(2)
    pbs.down(False)
    _, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    assert marker.read_text() == "ran\n"
    assert len(list(pbs.spool.glob("*.json"))) == 1, "submitted once"
    log = orch("logs", "job").stdout
    assert "PBS on" in log and "does not answer" in log, log
    marker.unlink()
