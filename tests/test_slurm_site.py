"""The loopback Slurm sites the Slurm executor is tested against, checked through real SSH.

Everything goes the way the executor will go: a plain SSH exec channel (paramiko, no wrapper
script and no environment sent by the client) to the site's login node, as the unprivileged
user, then ``sbatch``, ``squeue``, ``scontrol`` and ``scancel``. So these tests pin what the
executor may rely on: the session finds the cluster by itself, job ids come back as
``Submitted batch job N``, one ``squeue``/``scontrol`` call reports many jobs with their exit
codes, and two sites started together are independent.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from sites.fixtures import SlurmSite
from sites.slurm import SlurmCluster

SUBMITTED = re.compile(r"^Submitted batch job (\d+)$")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


class Shell:
    """One SSH connection to a login node, and a work dir of this module's own in the home."""

    def __init__(self, site: SlurmSite, user: str):
        self.site = site
        self.user = user
        self.client = paramiko.SSHClient()
        self.client.load_host_keys(str(site.ssh.known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect(
            "127.0.0.1",
            port=site.ssh.port,
            username=user,
            key_filename=str(site.ssh.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        self.home = self.run('printf %s "$HOME"')[1]
        self.work = f"{self.home}/orch-slurm-test-{uuid.uuid4().hex[:8]}"
        self.check(f"mkdir -p {self.work}")

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of ``command`` in a plain exec channel."""
        _, out, err = self.client.exec_command(command, timeout=timeout)
        stdout = out.read().decode()
        stderr = err.read().decode()
        return out.channel.recv_exit_status(), stdout, stderr

    def check(self, command: str) -> str:
        status, stdout, stderr = self.run(command)
        assert status == 0, f"{command!r} exited {status}: {stderr}"
        return stdout

    def sbatch(self, *args: str) -> int:
        """Submit the way the executor does; the job id from sbatch's one line."""
        stdout = self.check(" ".join(["sbatch", f"-D {self.work}", *args]))
        match = SUBMITTED.match(stdout.strip())
        assert match, f"sbatch said {stdout!r}"
        return int(match.group(1))

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (its one-line form is KEY=VALUE pairs)."""
        return _fields(self.check(f"scontrol -o show job {job_id}"))

    def wait(self, job_id: int, states: set[str], timeout: float = 30.0) -> dict[str, str]:
        """Poll the job (as the executor will) until it is in one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["JobState"] in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['JobState']}"
            time.sleep(0.2)

    def close(self) -> None:
        self.run(f"rm -rf {self.work}")
        self.client.close()


def _fields(line: str) -> dict[str, str]:
    """KEY=VALUE pairs of one ``scontrol -o`` line (values hold no spaces for these keys)."""
    return dict(pair.split("=", 1) for pair in line.split() if "=" in pair)


@pytest.fixture(scope="module")
def user(slurm_site: SlurmSite) -> Iterator[Shell]:
    """The unprivileged user on the first site's login node."""
    shell = Shell(slurm_site, slurm_site.ssh.unprivileged_user)
    yield shell
    shell.close()


@pytest.fixture(scope="module")
def second_user(second_slurm_site: SlurmSite) -> Iterator[Shell]:
    """The unprivileged user on the second site's login node."""
    shell = Shell(second_slurm_site, second_slurm_site.ssh.unprivileged_user)
    yield shell
    shell.close()


def test_cluster_is_up_with_its_partitions(slurm_cluster: SlurmCluster) -> None:
    result = slurm_cluster.run("sinfo", "-h", "-o", "%P %t %N")
    assert result.stdout.split("\n")[:2] == [
        f"debug* idle {slurm_cluster.node}",
        f"long idle {slurm_cluster.node}",
    ]
    assert slurm_cluster.partitions == ("debug", "long")
    assert slurm_cluster.env["SLURM_CONF"] == str(slurm_cluster.conf)


@pytest.mark.parametrize("who", ["root", "orchtest"])
def test_ssh_sessions_find_the_cluster(slurm_site: SlurmSite, who: str) -> None:
    """A non-interactive session reads no profile: sshd's SetEnv hands it SLURM_CONF."""
    shell = Shell(slurm_site, who)
    try:
        assert shell.check('printf %s "$SLURM_CONF"') == str(slurm_site.cluster.conf)
        assert shell.check("command -v sbatch").strip() == "/usr/bin/sbatch"
        assert shell.check("sinfo -h -o %N").strip() == slurm_site.cluster.node
    finally:
        shell.close()


def test_sbatch_runs_the_job_as_the_user_and_writes_its_output(user: Shell) -> None:
    job_id = user.sbatch("-o out-%j.txt", "--wrap 'echo hello from $SLURM_JOB_ID; id -un'")
    job = user.wait(job_id, ENDED)
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0")
    assert job["Partition"] == "debug"
    assert job["WorkDir"] == user.work
    output = f"{user.work}/out-{job_id}.txt"
    assert job["StdOut"] == output
    assert user.check(f"cat {output}") == f"hello from {job_id}\norchtest\n"
    assert Path(output).owner() == "orchtest"


def test_failing_job_reports_its_exit_code(user: Shell) -> None:
    failing = user.sbatch("-p long -o fail-%j.txt", "--wrap 'echo partial; exit 3'")
    passing = user.sbatch("-o pass-%j.txt", "--wrap true")
    assert user.wait(failing, ENDED)["JobState"] == "FAILED"
    user.wait(passing, ENDED)
    # one call per poll round reports every job, ended ones included (for MinJobAge s); squeue's
    # exit_code is the raw wait status (3 << 8), scontrol's ExitCode is 'code:signal'
    rows = user.check(f"squeue -h -t all -j {failing},{passing} -O JobID:12,State:12,exit_code:6")
    assert sorted(tuple(row.split()) for row in rows.splitlines()) == sorted(
        [(str(failing), "FAILED", str(3 << 8)), (str(passing), "COMPLETED", "0")]
    )
    jobs = {
        int(fields["JobId"]): fields
        for fields in map(_fields, user.check("scontrol -o show job").splitlines())
    }
    assert (jobs[failing]["JobState"], jobs[failing]["ExitCode"]) == ("FAILED", "3:0")
    assert jobs[failing]["Partition"] == "long"
    assert (jobs[passing]["JobState"], jobs[passing]["ExitCode"]) == ("COMPLETED", "0:0")
    assert user.check(f"cat {user.work}/fail-{failing}.txt") == "partial\n"


def test_unwritable_output_file_fails_the_job_with_0_53(user: Shell) -> None:
    job_id = user.sbatch("-o /root/forbidden-%j.txt", "--wrap true")
    job = user.wait(job_id, ENDED)
    assert (job["JobState"], job["ExitCode"]) == ("FAILED", "0:53")


def test_scancel_stops_a_running_job(user: Shell) -> None:
    marker = f"{user.work}/started"
    job_id = user.sbatch("-o sleep-%j.txt", f"--wrap 'touch {marker}; exec sleep 317'")
    user.wait(job_id, {"RUNNING"})
    assert user.check(f"squeue -h -j {job_id} -o %T").strip() == "RUNNING"
    deadline = time.monotonic() + 10
    while user.run(f"test -e {marker}")[0] != 0:
        assert time.monotonic() < deadline, "the job's script never started"
        time.sleep(0.1)
    sleeper = "pgrep -u orchtest -x -f 'sleep 317'"
    assert user.run(sleeper)[0] == 0, "the job's process is not there"
    user.check(f"scancel {job_id}")
    job = user.wait(job_id, ENDED)
    assert job["JobState"] == "CANCELLED"
    deadline = time.monotonic() + 10
    while (status := user.run(sleeper)[0]) == 0:
        assert time.monotonic() < deadline, "the cancelled job's process is still running"
        time.sleep(0.1)
    assert status == 1, "pgrep failed"


def test_two_sites_run_at_once_and_keep_their_jobs_apart(user: Shell, second_user: Shell) -> None:
    first, second = user.site.cluster, second_user.site.cluster
    assert first.name != second.name
    assert {first.ctld_port, first.slurmd_port}.isdisjoint({second.ctld_port, second.slurmd_port})
    assert second_user.check("sinfo -h -o %N").strip() == second.node
    name = f"only-on-{second.name}"
    job_id = second_user.sbatch(f"-J {name} -o two-%j.txt", "--wrap 'echo second site'")
    job = second_user.wait(job_id, ENDED)
    assert (job["JobState"], job["NodeList"]) == ("COMPLETED", second.node)
    assert second_user.check(f"cat {second_user.work}/two-{job_id}.txt") == "second site\n"
    assert name in second_user.check("squeue -h -t all -o %j").split()
    assert name not in user.check("squeue -h -t all -o %j").split()
    for fields in map(_fields, user.check("scontrol -o show job").splitlines()):
        assert fields["JobName"] != name
        assert fields["NodeList"] in ("", "(null)", first.node)
