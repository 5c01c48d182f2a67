"""The stand-in PBS Professional of tests/sites/pbs (qsub, qstat, qdel; PBS cannot be installed
here), checked through its commands the way a tool uses them: ``qsub`` prints the id alone,
``qstat -f -F json -x`` shows the job R then F with its Exit_status, ``qdel`` ends it with 271,
unknown ids give PBS's messages and exit statuses, and a job outlives the SSH session that
submitted it."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from sites.pbs import PbsBin
from sites.sshd import SshServer

ID = re.compile(r"^\d+\.standin$")


def run(pbs: PbsBin, *args: str, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=pbs.environ(), cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=20)


def qsub(pbs: PbsBin, workdir: Path, script: str, *args: str) -> str:
    path = workdir / f"job-{uuid.uuid4().hex[:6]}.sh"
    path.write_text(f"#!/bin/bash\n{script}\n")
    done = run(pbs, "qsub", *args, path.name, cwd=workdir)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert ID.match(job_id) and done.stdout == f"{job_id}\n", done.stdout
    return job_id


def jobs(pbs: PbsBin, *ids: str) -> dict[str, dict]:
    done = run(pbs, "qstat", "-f", "-F", "json", "-x", *ids)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["pbs_version"] == "19.1.3-standin"
    return document.get("Jobs", {})


def wait_state(pbs: PbsBin, job_id: str, state: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := jobs(pbs, job_id)[job_id])["job_state"] != state:
        assert time.monotonic() < deadline, f"{job_id} still {job['job_state']}"
        time.sleep(0.05)
    return job


def group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def record(pbs: PbsBin, job_id: str) -> dict:
    return json.loads((pbs.spool / f"{job_id}.json").read_text())


def test_job_runs_at_once_and_finishes_with_its_exit_status(pbs_bin: PbsBin,
                                                            tmp_path: Path) -> None:
    script = ("#PBS -N fromfile\n#PBS -l select=2:ncpus=2:mpiprocs=2:mem=512mb\n"
              "#PBS -l walltime=00:10:00\n#PBS -j oe\n#PBS -o out.txt\n"
              'echo "id=$PBS_JOBID name=$PBS_JOBNAME pwd=$(pwd) wd=$PBS_O_WORKDIR"\n'
              'echo "nodes=$(wc -l < "$PBS_NODEFILE") q=$PBS_QUEUE v=$GREETING"\n'
              "echo to-stderr >&2\nsleep 1\nexit 3")
    job_id = qsub(pbs_bin, tmp_path, script, "-N", "hello", "-v", "GREETING=hi")
    next(tmp_path.glob("job-*.sh")).unlink()  # the spool keeps its own copy
    job = wait_state(pbs_bin, job_id, "R")
    assert "Exit_status" not in job
    assert (job["Job_Name"], job["queue"], job["exec_host"]) == ("hello", "workq", "localhost/0")
    assert job["Job_Owner"].startswith("root@")
    assert re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", job["ctime"])
    assert job["Resource_List"] == {"mem": "1gb", "mpiprocs": 4, "ncpus": 4, "nodect": 2,
                                    "place": "pack", "select": "2:ncpus=2:mpiprocs=2:mem=512mb",
                                    "walltime": "00:10:00"}
    job = wait_state(pbs_bin, job_id, "F")
    assert job["Exit_status"] == 3
    assert re.match(r"^00:00:0\d$", job["resources_used"]["walltime"])
    home = pwd.getpwuid(os.geteuid()).pw_dir
    assert (tmp_path / "out.txt").read_text() == (
        f"id={job_id} name=hello pwd={home} wd={tmp_path}\nnodes=4 q=workq v=hi\nto-stderr\n")
    # the short id, and no id at all (every job of the spool)
    assert list(jobs(pbs_bin, job_id.split(".")[0])) == [job_id]
    assert list(jobs(pbs_bin)) == [job_id]
    # without -x a finished job is history
    done = run(pbs_bin, "qstat", job_id)
    assert done.returncode == 35 and "Job has finished" in done.stderr


def test_default_output_names_and_a_job_killed_by_a_signal(pbs_bin: PbsBin,
                                                           tmp_path: Path) -> None:
    job_id = qsub(pbs_bin, tmp_path, "echo out; echo err >&2; kill -9 $$", "-N", "killed")
    job = wait_state(pbs_bin, job_id, "F")
    assert job["Exit_status"] == 256 + 9
    seq = job_id.split(".")[0]
    assert (tmp_path / f"killed.o{seq}").read_text() == "out\n"
    assert (tmp_path / f"killed.e{seq}").read_text() == "err\n"
    assert run(pbs_bin, "qstat", "--version").stdout == "pbs_version = 19.1.3-standin\n"


def test_qsub_refuses_bad_options_and_missing_scripts(pbs_bin: PbsBin, tmp_path: Path) -> None:
    (tmp_path / "job.sh").write_text("#!/bin/bash\ntrue\n")
    done = run(pbs_bin, "qsub", "-b", "job.sh", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("qsub: invalid option -- 'b'\n")
    done = run(pbs_bin, "qsub", "missing.sh", cwd=tmp_path)
    assert done.returncode == 1 and "missing.sh" in done.stderr
    assert not list(pbs_bin.spool.glob("*.json"))


def test_qdel_kills_the_job_and_records_271(pbs_bin: PbsBin, tmp_path: Path) -> None:
    job_id = qsub(pbs_bin, tmp_path, "sleep 60")
    wait_state(pbs_bin, job_id, "R")
    pgid = record(pbs_bin, job_id)["pgid"]
    assert group_alive(pgid)
    done = run(pbs_bin, "qdel", job_id)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    job = wait_state(pbs_bin, job_id, "F")
    assert job["Exit_status"] == 271
    assert not group_alive(pgid)
    done = run(pbs_bin, "qdel", job_id.split(".")[0])
    assert done.returncode == 35
    assert done.stderr == f"qdel: Job has finished {job_id}\n"
    # a job that ignores SIGTERM gets SIGKILL 2 s later
    job_id = qsub(pbs_bin, tmp_path, "trap '' TERM; sleep 60")
    wait_state(pbs_bin, job_id, "R")
    pgid = record(pbs_bin, job_id)["pgid"]
    assert run(pbs_bin, "qdel", job_id).returncode == 0
    assert wait_state(pbs_bin, job_id, "F")["Exit_status"] == 271
    assert not group_alive(pgid)


def test_unknown_ids(pbs_bin: PbsBin, tmp_path: Path) -> None:
    job_id = qsub(pbs_bin, tmp_path, "true")
    wait_state(pbs_bin, job_id, "F")
    done = run(pbs_bin, "qstat", "-x", "-f", "-F", "json", job_id, "999")
    assert done.returncode == 153
    assert done.stderr == "qstat: Unknown Job Id 999.standin\n"
    assert list(json.loads(done.stdout)["Jobs"]) == [job_id]
    done = run(pbs_bin, "qdel", "999.standin")
    assert (done.returncode, done.stderr) == (153, "qdel: Unknown Job Id 999.standin\n")


def test_a_server_that_is_down(pbs_bin: PbsBin, tmp_path: Path) -> None:
    (tmp_path / "job.sh").write_text("#!/bin/bash\ntrue\n")
    pbs_bin.down()
    for command in (["qsub", "job.sh"], ["qstat", "-f", "-F", "json", "-x"], ["qdel", "1"]):
        done = run(pbs_bin, *command, cwd=tmp_path)
        assert done.returncode == 2, command
        assert done.stderr == (f"Connection refused\n{command[0]}: cannot connect to server "
                               "standin (errno=111)\n")
    pbs_bin.down(False)
    assert run(pbs_bin, "qsub", "job.sh", cwd=tmp_path).returncode == 0


def test_the_job_outlives_the_ssh_session_that_submitted_it(pbs_bin: PbsBin,
                                                            ssh_server: SshServer) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(ssh_server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=ssh_server.port, username=ssh_server.unprivileged_user,
                   key_filename=str(ssh_server.client_key), look_for_keys=False,
                   allow_agent=False, timeout=10)
    work = f"orch-pbs-test-{uuid.uuid4().hex[:8]}"
    prefix = f"PBS_STANDIN_SPOOL={pbs_bin.spool} PATH={pbs_bin.bin}:$PATH"
    command = (f"mkdir {work} && cd {work} && printf '%s\\n' '#!/bin/bash' '#PBS -N remote' "
               "'sleep 2' 'echo \"$PBS_JOBID $(id -un)\"' > job.sh && "
               f"{prefix} qsub -o out.txt job.sh && pwd")
    try:
        _, out, err = client.exec_command(command, timeout=20)
        stdout, stderr = out.read().decode(), err.read().decode()
        assert out.channel.recv_exit_status() == 0, stderr
    finally:
        client.close()
    job_id, workdir = stdout.split()
    assert ID.match(job_id)
    job = jobs(pbs_bin, job_id)[job_id]
    assert job["job_state"] == "R", "the job died with the session"
    assert job["Job_Owner"].startswith(f"{ssh_server.unprivileged_user}@")
    job = wait_state(pbs_bin, job_id, "F")
    assert job["Exit_status"] == 0
    try:
        assert Path(workdir, "out.txt").read_text() == \
            f"{job_id} {ssh_server.unprivileged_user}\n"
    finally:
        subprocess.run(["rm", "-rf", workdir], check=False)


@pytest.fixture(autouse=True)
def _no_spool_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PBS_STANDIN_SPOOL", raising=False)
