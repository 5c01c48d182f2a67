"""An Ansible operation's processes on a remote host: every task's module and the commands it
starts carry the operation's token (``ORCH_OPERATION``), so that the engine finds them after
orch was killed; a playbook stopped by its timeout or a cancel has them stopped there too, not
only its ansible-playbook here. Both ways playbooks run: the fork server and ansible-runner."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from orch.engine import survivors
from orch.executors.ansible import FORK_SERVER_SWITCH, AnsibleExecutor, _stop_remote
from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.transport import processes
from orch.transport.base import OPERATION_ENV, HostKeyPolicy
from orch.transport.ssh import SshTransport
from sites.processes import running

pytest.importorskip("ansible_runner")

# interpreter discovery picks root's pyenv shim on this machine (see test_ansible_executor)
PYTHON = {"ansible_python_interpreter": "/usr/bin/python3"}


@pytest.fixture(params=["fork-server", "ansible-runner"])
def way(request, monkeypatch) -> str:
    if request.param == "ansible-runner":
        monkeypatch.setenv(FORK_SERVER_SWITCH, "0")
    else:
        monkeypatch.delenv(FORK_SERVER_SWITCH, raising=False)
    monkeypatch.delenv(OPERATION_ENV, raising=False)  # only the operation's own
    return request.param


@pytest.fixture
def transport(ssh_server, ssh_user_host):
    opened = SshTransport(ssh_user_host, HostKeyPolicy([str(ssh_server.known_hosts)]), 10)
    yield opened
    opened.close()


def run(
    folder: Path,
    host: Host,
    files: dict[str, str],
    known_hosts: list[str],
    token: str,
    transport=None,
    cancel: threading.Event | None = None,
    logs: list[str] | None = None,
    **kwargs,
) -> OperationResult:
    artifacts = []
    for name, text in files.items():
        path = folder / "blueprint" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        artifacts.append(Artifact(name, path))
    task = Task(
        deployment="dep", node="web", instance="web/0", interface="Standard",
        operation="create", implementation=artifacts[0], dependencies=tuple(artifacts[1:]),
        host=host, inputs=PYTHON, environment={OPERATION_ENV: token}, **kwargs,
    )  # fmt: skip
    context = RunContext(
        transport=transport or (lambda _host: pytest.fail("no transport needed")),
        cancel=cancel or threading.Event(),
        log=lambda stream, line: (logs if logs is not None else []).append(line),
        known_hosts=known_hosts,
    )
    return AnsibleExecutor().run(task, context)


PLAYS = """
- hosts: all
  gather_facts: false
  environment: {PLAYVAR: play}
  tasks:
    - name: shell
      shell: echo "$ORCH_OPERATION $PLAYVAR $TASKVAR"
      environment: {TASKVAR: task}
      register: one
    - set_fact: {first: "{{ one.stdout }}"}
- hosts: all
  gather_facts: false
  roles: [printer]
  tasks:
    - command: printenv ORCH_OPERATION
      register: two
    - set_fact: {second: "{{ two.stdout }}"}
"""
ROLE = """
- command: printenv ORCH_OPERATION
  register: three
- set_fact: {third: "{{ three.stdout }}"}
"""


def test_every_task_on_the_remote_host_carries_the_token(way, ssh_server, ssh_user_host,
                                                          tmp_path):  # fmt: skip
    token = secrets.token_hex(8)
    files = {"playbooks/op.yml": PLAYS, "playbooks/roles/printer/tasks/main.yml": ROLE}
    result = run(tmp_path, ssh_user_host, files, [str(ssh_server.known_hosts)], token)
    assert result.ok, result.message
    # the user's own play and task environments are kept beside it
    assert result.outputs == {"first": f"{token} play task", "second": token, "third": token}


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_stopped_playbook_leaves_nothing_on_the_remote_host(how, way, ssh_server,
                                                               ssh_user_host, transport,
                                                               tmp_path):  # fmt: skip
    token = secrets.token_hex(8)
    playbook = "- hosts: all\n  gather_facts: false\n  tasks:\n" \
               "    - name: wait\n      shell: sleep 43.5; echo never\n"  # fmt: skip
    cancel = threading.Event()
    logs: list[str] = []
    if how == "cancel":
        def watch() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not processes.find(transport, [token]):
                time.sleep(0.1)
            cancel.set()

        threading.Thread(target=watch, daemon=True).start()
    result = run(tmp_path, ssh_user_host, {"playbooks/op.yml": playbook},
                 [str(ssh_server.known_hosts)], token, transport=lambda _host: transport,
                 cancel=cancel, logs=logs, timeout=4 if how == "timeout" else 60)  # fmt: skip
    assert result.status == ("timeout" if how == "timeout" else "cancelled"), result.message
    assert any("TASK [wait]" in line for line in logs), logs  # it had started there
    assert "may still run" not in result.message
    assert processes.find(transport, [token]) == []
    # the test sshd is this machine: its processes are ours to see
    sleepers = [p for p in _sleepers("43.5") if running(p)]
    assert not sleepers, sleepers


def _sleepers(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"sleep " + argument.encode() in cmdline or cmdline.split(b"\0")[:2] == [
                b"sleep", argument.encode()]:  # fmt: skip
                found.append(int(entry.name))
    return found


class _Unreachable:
    host = "site"

    def run(self, command: str, **kwargs):
        raise OSError("connection reset")


def _task(host: Host, token: str | None) -> Task:
    path = Path(os.devnull)
    return Task(deployment="d", node="n", instance="n/0", interface="Standard",
                operation="create", implementation=Artifact("op.yml", path), host=host,
                environment={OPERATION_ENV: token} if token else {})  # fmt: skip


def test_stopping_what_is_left_says_when_the_host_cannot_be_asked():
    host = Host("site", address="192.0.2.1", user="u")
    context = RunContext(transport=lambda _host: _Unreachable(), cancel=threading.Event(),
                         log=lambda *_: None)  # fmt: skip
    message = _stop_remote(_task(host, "abc"), context)
    assert message is not None and "may still run there" in message
    assert "u@192.0.2.1:22" in message and "connection reset" in message


def test_nothing_to_stop_remotely_here_or_without_a_token():
    context = RunContext(transport=lambda _host: pytest.fail("no host to ask"),
                         cancel=threading.Event(), log=lambda *_: None)  # fmt: skip
    assert _stop_remote(_task(Host("localhost"), "abc"), context) is None
    assert _stop_remote(_task(Host("site", address="192.0.2.1"), None), context) is None


def test_the_engine_finds_survivors_with_the_same_helpers():
    assert survivors.find is processes.find and survivors.stop is processes.stop
    assert survivors.find_command is processes.find_command
    assert survivors.ENV == processes.ENV == OPERATION_ENV
    assert survivors.Survivor is processes.TokenProcess
