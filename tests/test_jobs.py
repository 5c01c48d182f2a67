"""Jobs (submit / run / cancel) end to end: the real CLI, operations over the loopback sshd.

The "job" is a real detached process on the SSH host (``setsid sh -c 'sleep N; ...'``): submit
starts it and reports its id, run reads whether it wrote its result yet, cancel kills it. Each
test runs twice: with shell scripts (Yorc's convention: exported TOSCA_JOB_ID /
TOSCA_JOB_STATUS) and with Ansible playbooks (set_stats / set_fact of the same names).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from orch.state.lock import pid_alive
from sites.processes import wait_for_file
from test_deploy import Orch

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - orch-types:1.0.0
topology_template:
  inputs:
    job_dir: {{type: string}}
    seconds: {{type: integer, default: 1}}
    result: {{type: string, default: COMPLETED}}
  node_templates:
    site:
      type: orch.nodes.Host
      properties:
        address: 127.0.0.1
      capabilities:
        endpoint:
          properties:
            port: {port}
            credentials: {{user: {user}, token_type: private_key, token: {key}}}
    sim:
      type: orch.nodes.Job
      properties:
        poll_interval: 0.2 s
      requirements:
        - host: site
      interfaces:
        Runnable:
          operations:
            submit:
              implementation: jobs/submit.{ext}
              inputs:
                JOB_DIR: {{get_input: job_dir}}
                SECONDS_TO_RUN: {{get_input: seconds}}
                RESULT: {{get_input: result}}
            run:
              implementation: jobs/run.{ext}
              inputs: {{JOB_DIR: {{get_input: job_dir}}}}
            cancel:
              implementation: jobs/cancel.{ext}
              inputs: {{JOB_DIR: {{get_input: job_dir}}}}
    post:
      type: orch.nodes.Job
      requirements:
        - host: site
        - dependency: sim
      interfaces:
        Runnable:
          operations:
            submit:
              implementation: jobs/submit.{ext}
              inputs:
                JOB_DIR: {{get_input: job_dir}}
                SECONDS_TO_RUN: 0
                RESULT: COMPLETED
            run:
              implementation: jobs/run.{ext}
              inputs: {{JOB_DIR: {{get_input: job_dir}}}}
            cancel:
              implementation: jobs/cancel.{ext}
              inputs: {{JOB_DIR: {{get_input: job_dir}}}}
"""

# the job: records its pid, sleeps, then writes its result (COMPLETED or FAILED)
SPAWN = (
    'setsid sh -c \'echo $$ > "$0.pid"; sleep "$1"; echo "$2" > "$0.out"\' '
    '"$JOB_DIR/$INSTANCE" "$SECONDS_TO_RUN" "$RESULT" </dev/null >/dev/null 2>&1 &'
)
SCRIPTS = {
    "submit.sh": f"""
        #!/bin/sh
        mkdir -p "$JOB_DIR"
        echo "$INSTANCE" >> "$JOB_DIR/submits"
        {SPAWN}
        export TOSCA_JOB_ID="$INSTANCE-$!"
        echo "submitted $TOSCA_JOB_ID"
        """,
    "run.sh": """
        #!/bin/sh
        if [ -e "$JOB_DIR/$INSTANCE.out" ]; then
          TOSCA_JOB_STATUS=$(cat "$JOB_DIR/$INSTANCE.out")
        else
          TOSCA_JOB_STATUS=RUNNING
        fi
        export TOSCA_JOB_STATUS
        echo "job $TOSCA_JOB_ID: $TOSCA_JOB_STATUS"
        """,
    "cancel.sh": """
        #!/bin/sh
        echo "$TOSCA_JOB_ID" >> "$JOB_DIR/cancels"
        kill "$(cat "$JOB_DIR/$INSTANCE.pid")"
        """,
}
PLAYBOOKS = {
    "submit.yaml": f"""
        - hosts: all
          gather_facts: false
          tasks:
            - name: start the job
              ansible.builtin.shell: |
                JOB_DIR="{{{{ JOB_DIR }}}}" INSTANCE="{{{{ INSTANCE }}}}"
                SECONDS_TO_RUN="{{{{ SECONDS_TO_RUN }}}}" RESULT="{{{{ RESULT }}}}"
                mkdir -p "$JOB_DIR"
                echo "$INSTANCE" >> "$JOB_DIR/submits"
                {SPAWN}
                echo "$INSTANCE-$!"
              register: spawned
            - name: report its id
              ansible.builtin.set_stats:
                data:
                  TOSCA_JOB_ID: "{{{{ spawned.stdout }}}}"
        """,
    "run.yaml": """
        - hosts: all
          gather_facts: false
          tasks:
            - name: read the job's result
              ansible.builtin.shell: >-
                cat "{{ JOB_DIR }}/{{ INSTANCE }}.out" 2>/dev/null || echo RUNNING
              register: state
            - name: report it
              ansible.builtin.set_fact:
                TOSCA_JOB_STATUS: "{{ state.stdout }}"
            - name: show it
              ansible.builtin.debug:
                msg: "job {{ TOSCA_JOB_ID }}: {{ TOSCA_JOB_STATUS }}"
        """,
    "cancel.yaml": """
        - hosts: all
          gather_facts: false
          tasks:
            - name: kill the job
              ansible.builtin.shell: |
                echo "{{ TOSCA_JOB_ID }}" >> "{{ JOB_DIR }}/cancels"
                kill "$(cat "{{ JOB_DIR }}/{{ INSTANCE }}.pid")"
        """,
}


@pytest.fixture(params=["scripts", "playbooks"])
def site(request, tmp_path: Path, ssh_server):
    """A job blueprint (scripts or playbooks) on the unprivileged SSH user, and its job dir."""
    kind = request.param
    orch = Orch(tmp_path)
    ext = "sh" if kind == "scripts" else "yaml"
    for name, text in (SCRIPTS if kind == "scripts" else PLAYBOOKS).items():
        orch.write(f"jobs/{name}", text)
    orch.write(
        "jobs.yaml",
        BLUEPRINT.format(
            port=ssh_server.port,
            user=ssh_server.unprivileged_user,
            key=ssh_server.client_key,
            ext=ext,
        ),
        0o644,
    )
    # the job runs as the SSH user: its folder is in that user's home
    job_dir = Path("/home") / ssh_server.unprivileged_user / f"jobs-{uuid.uuid4().hex[:8]}"
    orch.job_dir = job_dir  # type: ignore[attr-defined]
    orch.known_hosts = str(ssh_server.known_hosts)  # type: ignore[attr-defined]
    yield orch
    for pid_file in job_dir.glob("*.pid"):  # no job outlives its test
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    shutil.rmtree(job_dir, ignore_errors=True)


def _deploy_args(site: Orch, *extra: str) -> tuple[str, ...]:
    return (
        "deploy", "jobs.yaml", "-n", "jobs", "-i", f"job_dir={site.job_dir}",
        "--known-hosts", site.known_hosts, "--poll-interval", "0.2", *extra,
    )  # fmt: skip


def _status(site: Orch) -> dict:
    return site.json("status", "jobs")


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait_running(site: Orch, instance: str) -> int:
    pid_file = site.job_dir / f"{instance}.pid"
    assert wait_for_file(pid_file, timeout=60), f"the job of {instance} never started"
    time.sleep(0.3)  # orch records the job id as the submit operation ends
    return int(pid_file.read_text())


def _kill_orch_while_job_runs(site: Orch, seconds: int) -> int:
    """Starts a deploy whose first job runs ``seconds``, kill -9s orch once it runs: its pid."""
    deploy = site.start(*_deploy_args(site, "-i", f"seconds={seconds}"))
    try:
        pid = _wait_running(site, "sim_0")
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(timeout=30)
    finally:
        deploy.communicate()
    return pid


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), "the job process survived its cancel"


def test_deploy_submits_watches_and_chains_jobs_then_run_runs_them_again(site):
    # 4 s: longer than a submit and a first poll take, even on a loaded machine
    site(*_deploy_args(site, "-i", "seconds=4"))
    status = _status(site)
    states = {i["id"]: i["state"] for i in status["instances"]}
    assert states == {"site/0": "started", "sim/0": "executed", "post/0": "executed"}
    jobs = status["jobs"]
    assert [(j["instance"], j["status"], j["reported"]) for j in jobs] == [
        ("sim/0", "completed", "COMPLETED"),
        ("post/0", "completed", "COMPLETED"),
    ]
    assert jobs[0]["id"].startswith("sim_0-")
    # post was submitted only once sim's job had written its result
    sim_done = (site.job_dir / "sim_0.out").stat().st_mtime
    post_started = (site.job_dir / "post_0.pid").stat().st_mtime
    assert post_started >= sim_done
    # the run operation was called while the job ran, and again once it had ended
    logs = site("logs", "jobs").stdout
    sim_id = jobs[0]["id"]
    assert f"job {sim_id}: RUNNING" in logs, logs
    assert f"job {sim_id}: COMPLETED" in logs, logs

    # `orch run run`: every job again, each execution its own record
    site("run", "run", "-n", "jobs", "--known-hosts", site.known_hosts, "--poll-interval", "0.2")
    site("run", "run", "-n", "jobs", "--known-hosts", site.known_hosts, "--poll-interval", "0.2")
    jobs = _status(site)["jobs"]
    assert len(jobs) == 6
    assert len({j["id"] for j in jobs}) == 6
    assert all(j["status"] == "completed" for j in jobs)
    assert _lines(site.job_dir / "submits") == ["sim_0", "post_0"] * 3

    site("undeploy", "jobs", "--known-hosts", site.known_hosts)
    assert not (site.job_dir / "cancels").exists()  # nothing was running: nothing to cancel


def test_failed_job_fails_its_step_and_resume_submits_it_again(site):
    failed = site(*_deploy_args(site, "-i", "result=FAILED"), check=4)
    assert "sim/0" in failed.stderr
    assert "ended FAILED" in failed.stderr
    assert "127.0.0.1" in failed.stderr
    status = _status(site)
    states = {i["id"]: i["state"] for i in status["instances"]}
    assert states["sim/0"] == "failed"
    assert states["post/0"] == "initial"  # it waits for the end of sim's job
    assert [(j["instance"], j["status"]) for j in status["jobs"]] == [("sim/0", "failed")]

    (site.job_dir / "sim_0.out").unlink()
    # another input for the job that failed: it has not succeeded, so it simply runs with it
    site(*_deploy_args(site, "-i", "result=COMPLETED"))
    jobs = _status(site)["jobs"]
    assert [(j["instance"], j["status"]) for j in jobs] == [
        ("sim/0", "failed"),
        ("sim/0", "completed"),
        ("post/0", "completed"),
    ]
    assert jobs[0]["id"] != jobs[1]["id"]


def test_orch_cancel_cancels_a_running_job_and_stops_the_deploy(site):
    deploy = site.start(*_deploy_args(site, "-i", "seconds=15"))
    try:
        pid = _wait_running(site, "sim_0")
        assert pid_alive(pid)
        cancelled = site("cancel", "jobs", "--known-hosts", site.known_hosts, timeout=120)
        assert "asked" in cancelled.stderr
        assert deploy.wait(timeout=60) == 130
    finally:
        if deploy.poll() is None:
            deploy.kill()
        deploy.communicate()
    _wait_gone(pid)
    status = _status(site)
    [job] = status["jobs"]
    assert job["status"] == "cancelled"
    assert _lines(site.job_dir / "cancels") == [job["id"]]
    assert {i["id"]: i["state"] for i in status["instances"]}["sim/0"] == "cancelled"
    again = site("cancel", "jobs", "--known-hosts", site.known_hosts)
    assert "no job of it is running" in again.stderr
    # deploying again submits a new job: it does not watch the cancelled one
    resumed = site(*_deploy_args(site), timeout=120)
    assert f"job {job['id']} of sim/0 was cancelled: it is submitted again" in resumed.stderr
    jobs = [(j["instance"], j["status"]) for j in _status(site)["jobs"]]
    assert jobs == [("sim/0", "cancelled"), ("sim/0", "completed"), ("post/0", "completed")]
    site("undeploy", "jobs", "--known-hosts", site.known_hosts)


def test_kill_9_while_a_job_runs_then_resume_watches_the_same_job(site):
    pid = _kill_orch_while_job_runs(site, 4)
    [before] = _status(site)["jobs"]
    assert before["status"] == "running"
    assert pid_alive(pid), "the job must outlive orch"

    resumed = site(*_deploy_args(site), timeout=120)
    assert "interrupted" in resumed.stderr
    jobs = _status(site)["jobs"]
    assert jobs[0]["id"] == before["id"]  # re-attached, not submitted again
    assert [(j["instance"], j["status"]) for j in jobs] == [
        ("sim/0", "completed"),
        ("post/0", "completed"),
    ]
    assert _lines(site.job_dir / "submits") == ["sim_0", "post_0"]


def test_undeploy_cancels_a_job_left_running(site):
    pid = _kill_orch_while_job_runs(site, 120)
    site("undeploy", "jobs", "--known-hosts", site.known_hosts)
    _wait_gone(pid)
    [job] = _status(site)["jobs"]
    assert job["status"] == "cancelled"
    assert _lines(site.job_dir / "cancels") == [job["id"]]


def test_ctrl_c_leaves_jobs_running_unless_asked_to_cancel_them(site):
    deploy = site.start(*_deploy_args(site, "-i", "seconds=120"))
    try:
        pid = _wait_running(site, "sim_0")
        deploy.send_signal(signal.SIGINT)
        assert deploy.wait(timeout=60) == 130
    finally:
        deploy.communicate()
    assert pid_alive(pid)  # a Ctrl-C stops orch, not the job
    [job] = _status(site)["jobs"]
    assert job["status"] == "running"

    # resumed with --cancel-jobs, then interrupted: the job is cancelled on the way out
    deploy = site.start(*_deploy_args(site, "--cancel-jobs"))
    try:
        time.sleep(1.5)  # it watches the job again
        deploy.send_signal(signal.SIGINT)
        assert deploy.wait(timeout=60) == 130
    finally:
        deploy.communicate()
    _wait_gone(pid)
    [job] = _status(site)["jobs"]
    assert job["status"] == "cancelled"
