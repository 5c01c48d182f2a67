"""The loopback Son of Grid Engine site the SGE executor will be tested against, checked
through real SSH.

Everything goes the way an executor goes: a plain SSH exec channel (paramiko, no environment
sent by the client) to the site's login node as the unprivileged user, then ``qsub -terse``,
``qstat -xml`` polls, ``qacct -j`` and ``qdel``. So these tests pin what an executor may rely
on: the session finds the cluster by itself, qsub prints the job id alone, a finished job
leaves ``qstat`` and shows up in ``qacct`` with its exit status, and a stopped cluster leaves
no daemon or job behind.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from sites.sge import (  # the session fixtures sge_cluster and sge_site too
    SgeCluster,
    SgeSite,
    _alive,
    require_sge,
    sge_cluster,  # noqa: F401
    sge_site,  # noqa: F401
)


class Shell:
    """One SSH connection to the login node, and a work dir of this module's own in the home."""

    def __init__(self, site: SgeSite, user: str):
        self.client = paramiko.SSHClient()
        self.client.load_host_keys(str(site.ssh.known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect("127.0.0.1", port=site.ssh.port, username=user,
                            key_filename=str(site.ssh.client_key), look_for_keys=False,
                            allow_agent=False, timeout=10)
        self.home = self.check('printf %s "$HOME"')
        self.work = f"{self.home}/orch-sge-test-{uuid.uuid4().hex[:8]}"
        self.check(f"mkdir -p {self.work}")

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
        _, out, err = self.client.exec_command(command, timeout=timeout)
        stdout, stderr = out.read().decode(), err.read().decode()
        return out.channel.recv_exit_status(), stdout, stderr

    def check(self, command: str) -> str:
        status, stdout, stderr = self.run(command)
        assert status == 0, f"{command!r} exited {status}: {stdout}{stderr}"
        return stdout

    def qsub(self, script: str, *args: str) -> int:
        """Write ``script`` into the work dir and submit it from there; the id qsub prints."""
        name = f"job-{uuid.uuid4().hex[:6]}.sh"
        self.check(f"cat > {self.work}/{name} <<'EOF'\n#!/bin/sh\n{script}\nEOF")
        stdout = self.check(f"cd {self.work} && qsub -terse -cwd {' '.join(args)} {name}")
        assert stdout.strip().isdigit(), f"qsub said {stdout!r}"
        return int(stdout)

    def states(self) -> dict[int, str]:
        """Job id -> state letters ('qw', 'r', 'Eqw' ...) of this user's jobs in qstat."""
        root = ET.fromstring(self.check("qstat -xml"))
        return {int(job.findtext("JB_job_number", "0")): job.findtext("state", "")
                for job in root.iter("job_list")}

    def wait_state(self, job_id: int, ready, timeout: float = 20.0) -> str | None:
        deadline = time.monotonic() + timeout
        while not ready(state := self.states().get(job_id)):
            assert time.monotonic() < deadline, f"job {job_id} still {state!r}"
            time.sleep(0.2)
        return state

    def qacct(self, job_id: int, timeout: float = 10.0) -> dict[str, str]:
        """``qacct -j`` of a job that has left qstat (accounting is flushed every second)."""
        deadline = time.monotonic() + timeout
        while (result := self.run(f"qacct -j {job_id}"))[0] != 0:
            assert time.monotonic() < deadline, f"job {job_id} not in qacct: {result}"
            time.sleep(0.2)
        fields = {}
        for line in result[1].splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
        return fields

    def close(self) -> None:
        self.run(f"rm -rf {self.work}")
        self.client.close()


@pytest.fixture(scope="module")
def user(sge_site: SgeSite) -> Iterator[Shell]:  # noqa: F811
    """The unprivileged user on the login node."""
    shell = Shell(sge_site, sge_site.ssh.unprivileged_user)
    yield shell
    shell.close()


def test_sessions_find_the_cluster(user: Shell, sge_cluster: SgeCluster) -> None:  # noqa: F811
    """A non-interactive session reads no profile: sshd's SetEnv hands it the SGE variables."""
    env = user.check("printf '%s\\n' \"$SGE_ROOT\" \"$SGE_CELL\" \"$SGE_QMASTER_PORT\" "
                     "\"$SGE_EXECD_PORT\"").split()
    assert env == [sge_cluster.env[name] for name in
                   ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT")]
    assert user.check("command -v qsub").strip() == f"{sge_cluster.bin_dir}/qsub"
    queues = user.check("qconf -sql").split()
    assert queues == ["all.q"]
    assert user.check("qconf -spl").split() == ["mpi"]
    assert "slots                 2" in user.check("qconf -sq all.q")
    # its own job group ids: two clusters sharing a range kill each other's jobs
    assert user.check("qconf -sconf | grep gid_range").split() == [
        "gid_range", sge_cluster.gid_range]


def test_qsub_runs_the_job_as_the_user_and_qacct_reports_it(user: Shell) -> None:
    job_id = user.qsub('echo "hello from $JOB_ID as $(id -un) on $NSLOTS slot(s)"',
                       "-N hello -o hello.out -j y")
    user.wait_state(job_id, lambda state: state is None)
    acct = user.qacct(job_id)
    assert (acct["jobname"], acct["owner"]) == ("hello", "orchtest")
    assert (acct["failed"], acct["exit_status"]) == ("0", "0")
    assert user.check(f"cat {user.work}/hello.out") == \
        f"hello from {job_id} as orchtest on 1 slot(s)\n"


def test_failing_job_and_pe_mpi(user: Shell) -> None:
    job_id = user.qsub('echo "$NSLOTS slots"; exit 3', "-N pejob -pe mpi 2 -o pe.out -j y")
    user.wait_state(job_id, lambda state: state is None)
    acct = user.qacct(job_id)
    assert (acct["failed"], acct["exit_status"], acct["granted_pe"]) == ("0", "3", "mpi")
    assert acct["slots"] == "2"
    assert user.check(f"cat {user.work}/pe.out") == "2 slots\n"


def test_qdel_stops_a_sleeping_job(user: Shell) -> None:
    seconds = random.randint(300, 999)  # tells this job's sleep from another test run's
    job_id = user.qsub(f"exec sleep {seconds}", "-N sleeper -o sleep.out -j y")
    assert user.wait_state(job_id, lambda state: state == "r") == "r"
    sleeper = f"pgrep -u orchtest -x -f 'sleep {seconds}'"
    deadline = time.monotonic() + 10
    while user.run(sleeper)[0] != 0:
        assert time.monotonic() < deadline, "the job's process never started"
        time.sleep(0.1)
    user.check(f"qdel {job_id}")
    user.wait_state(job_id, lambda state: state is None)
    deadline = time.monotonic() + 10
    while (status := user.run(sleeper)[0]) == 0:
        assert time.monotonic() < deadline, "the deleted job's process is still running"
        time.sleep(0.1)
    assert status == 1, "pgrep failed"
    acct = user.qacct(job_id)
    # failed 100 (killed by qdel), exit_status '137                  (Killed)'
    assert (acct["failed"].split()[0], acct["exit_status"].split()[0]) == ("100", "137")


def test_stop_deletes_jobs_and_leaves_no_daemon() -> None:
    """A cluster of its own (the session's stays up): stop() with a job running."""
    require_sge()
    root = Path(tempfile.mkdtemp(prefix="orch-sge-stop-"))
    cluster = SgeCluster(root, "sgestop")
    try:
        cluster.start()
        daemons = cluster.pids()
        seconds = str(random.randint(1000, 9999))
        assert set(daemons) == {"sge_qmaster", "sge_execd"}
        job = cluster.run("qsub", "-terse", "-b", "y", "-N", "sleeper", "-o", "/dev/null",
                          "-j", "y", "/bin/sleep", seconds).stdout.strip()
        deadline = time.monotonic() + 15
        while f"sleep {seconds}" not in _commands():
            assert time.monotonic() < deadline, f"job {job} never started"
            time.sleep(0.1)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not any(_alive(pid) for pid in daemons.values())
    assert f"sleep {seconds}" not in _commands()
    assert cluster.pids() == {}


def _commands() -> str:
    """Every live process's command line, one a line."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return "\n".join(lines)
