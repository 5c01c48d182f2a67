"""Batch jobs on a real Son of Grid Engine site (and, where the point is the same on every
scheduler, on the real Slurm site too): what SGE cannot honour, a job no queue can ever run, a
qmaster that goes away mid-run, a state word orch does not know, and a submit interrupted after
the scheduler took the job."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from sites.cli import Orch, wait_until
from sites.hpc import HpcSite, job_blueprint


def tool_dir(tmp_path: Path, **scripts: str) -> Path:
    """A folder the site's user can read with the given shell scripts (wrappers of a
    scheduler's commands, as a site might have)."""
    folder = Path(f"/tmp/orch-tools-{uuid.uuid4().hex[:8]}")
    folder.mkdir(mode=0o755)
    for name, text in scripts.items():
        (folder / name).write_text("#!/bin/sh\n" + text)
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize(
    ("properties", "option"),
    [
        ({"command": "true", "qos": "high"}, "qos: 'high'"),
        ({"command": "true", "launcher": "srun"}, "launcher: 'srun'"),
        ({"command": "true", "nodes": 2}, "nodes: 2"),
        ({"command": "true", "extra_options": "['--exclusive']"}, "extra_options: '--exclusive'"),
    ],
)
def test_options_sge_cannot_honour_are_refused_naming_site_and_option(
    orch: Orch, sge_hpc_site: HpcSite, sge_credential: str, properties: dict, option: str
) -> None:
    orch.write("sites.yaml", "sites:\n" + sge_hpc_site.yaml(sge_credential, "hpc1"))
    blueprint = job_blueprint(orch, **properties)
    failed = orch("deploy", str(blueprint), "--poll-interval", "0.3", check=4, timeout=120)
    assert f"site hpc1 runs Son of Grid Engine, which cannot honour {option}" in failed.stderr
    assert "retrying" not in failed.stderr  # bad input: another attempt would say the same


def test_a_job_the_cluster_can_never_run_is_refused_at_submit(
    orch: Orch, hpc_site: HpcSite, hpc_credential: str
) -> None:
    """64 slots on a 2-slot SGE cluster (SGE's verification, -w e, refuses it at qsub), 5
    nodes on a 1-node Slurm partition (Slurm queues it, pending for PartitionConfig): reported
    with the scheduler's reason, never left waiting for ever."""
    orch.write("sites.yaml", "sites:\n" + hpc_site.yaml(hpc_credential, "hpc1"))
    if hpc_site.scheduler == "sge":
        blueprint, reason = job_blueprint(orch, command="true", tasks=64), "no suitable queues"
    else:  # Slurm takes it, and says why it waits: a reason that never clears
        blueprint, reason = job_blueprint(orch, command="true", nodes=5), "PartitionConfig"
    failed = orch("deploy", str(blueprint), "--poll-interval", "0.3", check=4, timeout=120)
    assert reason in failed.stderr, failed.stderr
    if hpc_site.scheduler == "sge":
        assert not hpc_site.site.cluster.job_ids()
    else:
        assert "can never start as asked" in failed.stderr and "orch cancelled it" in (
            failed.stderr)
        job = re.search(r"job (\d+) can never start", failed.stderr).group(1)  # type: ignore
        shown = hpc_site.site.cluster.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T")
        assert shown.stdout.strip() in ("CANCELLED", ""), shown.stdout  # not left pending


def test_the_jobs_outlive_a_qmaster_that_stops_mid_run(
    orch: Orch, sge_hpc_site: HpcSite, sge_credential: str
) -> None:
    """qmaster killed while the job runs, started again 4 s later: orch keeps asking, watches
    the same job once SGE answers again, and nothing is submitted twice."""
    cluster = sge_hpc_site.site.cluster
    marker = f"/tmp/orch-sge-ran-{uuid.uuid4().hex[:8]}"
    orch.write("sites.yaml", "sites:\n" + sge_hpc_site.yaml(sge_credential, "hpc1"))
    blueprint = job_blueprint(orch, script=f"'echo ran >> {marker}; sleep 8; echo done'")
    running = orch.start("deploy", str(blueprint), "--poll-interval", "0.5")
    try:
        wait_until(lambda: os.path.exists(marker), "the job to start", timeout=60)
        cluster.stop_qmaster()
        time.sleep(4)
    finally:
        cluster.start_qmaster()
    _, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    assert Path(marker).read_text() == "ran\n"
    log = orch("logs", "job").stdout
    assert "Son of Grid Engine on" in log and "does not answer" in log, log
    os.unlink(marker)


def test_a_state_word_orch_does_not_know_fails_the_job_after_bounded_polls(
    orch: Orch, sge_hpc_site: HpcSite, sge_credential: str, tmp_path: Path
) -> None:
    """The site's qstat reports a state no table has ('zz'): orch logs it and asks again, then
    gives up after MAX_UNKNOWN_POLLS polls instead of polling for ever."""
    real = sge_hpc_site.site.cluster.bin_dir / "qstat"
    rename = "sed 's:<state>r</state>:<state>zz</state>:'"
    tools = tool_dir(tmp_path, qstat=f'{real} "$@" | {rename}\n')
    orch.write("sites.yaml", "sites:\n" + sge_hpc_site.yaml(sge_credential, "hpc1", tools))
    blueprint = job_blueprint(orch, script="'sleep 60'")
    failed = orch("deploy", str(blueprint), "--poll-interval", "0.2", check=4, timeout=120)
    assert "says job" in failed.stderr and "is 'zz', a state orch does not know" in failed.stderr
    assert "giving up after 20 polls" in failed.stderr, failed.stderr
    for job in sge_hpc_site.site.cluster.job_ids():
        sge_hpc_site.site.cluster.run("qdel", "-f", job, check=False)


def test_a_submit_killed_after_the_scheduler_took_the_job_finds_it_again(
    orch: Orch, hpc_site: HpcSite, hpc_credential: str, tmp_path: Path
) -> None:
    """orch killed (-9) after sbatch/qsub handed the job over but before it printed the id:
    the next deploy finds that job by the execution id it carries and watches it; the job runs
    once."""
    if hpc_site.scheduler == "slurm":
        real, name = "/usr/bin/sbatch", "sbatch"
    else:
        real, name = str(hpc_site.site.cluster.bin_dir / "qsub"), "qsub"
    # the site's submit command is slow to answer: the job is queued, its id not printed yet
    tools = tool_dir(tmp_path, **{name: f'out=$({real} "$@"); rc=$?; sleep 20\n'
                                        'printf "%s\\n" "$out"; exit $rc\n'})  # fmt: skip
    marker = f"/tmp/orch-ran-{uuid.uuid4().hex[:8]}"
    orch.write("sites.yaml", "sites:\n" + hpc_site.yaml(hpc_credential, "hpc1", tools))
    blueprint = job_blueprint(orch, script=f"'echo ran >> {marker}; sleep 3'")
    first = orch.start("deploy", str(blueprint), "--poll-interval", "0.3")
    wait_until(lambda: os.path.exists(marker), "the job to run", timeout=60)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    again = orch("deploy", str(blueprint), "--poll-interval", "0.3", timeout=120)
    assert "earlier attempt" in orch("logs", "job").stdout
    assert again.returncode == 0
    wait_until(lambda: Path(marker).read_text() == "ran\n", "the job's one run", timeout=10)
    time.sleep(1)
    assert Path(marker).read_text() == "ran\n", "submitted twice"
    os.unlink(marker)
