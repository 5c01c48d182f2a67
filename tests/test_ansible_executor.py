"""The Ansible executor with real playbook runs: on this machine and over SSH to the test sshd,
outputs from set_stats and set_fact, failures, host keys, secrets, timeout and cancel. Every run
test runs both ways: through the fork server, and with ansible-runner's own process
(``ORCH_ANSIBLE_FORK_SERVER=0``); then the fork server itself: concurrency, its death, orch's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orch.executors import ansible_server
from orch.executors.ansible import FORK_SERVER_SWITCH, KEY_FILE, AnsibleExecutor
from orch.executors.base import TAIL_LINES, Artifact, Host, OperationResult, RunContext, Task
from orch.executors.script import MASK
from sites.processes import running

pytest.importorskip("ansible_runner")
REPO = Path(__file__).resolve().parents[1]
SERVER_MODULE = b"orch.executors.ansible_server"


@pytest.fixture(autouse=True, params=["fork-server", "ansible-runner"])
def way(request, monkeypatch) -> str:
    """How playbooks run: forked by the fork server (the default), or each in its own process
    started by ansible-runner."""
    if request.param == "ansible-runner":
        monkeypatch.setenv(FORK_SERVER_SWITCH, "0")
    else:
        monkeypatch.delenv(FORK_SERVER_SWITCH, raising=False)
    return request.param


fork_server_only = pytest.mark.parametrize("way", ["fork-server"], indirect=True)


@dataclass
class Run:
    """Writes a playbook (and dependencies) to a blueprint folder and runs it on ``host``."""

    folder: Path
    host: Host = field(default_factory=lambda: Host("localhost"))
    known_hosts: list[str] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    artifacts_dir: Path | None = None

    def __call__(
        self,
        playbook: str,
        *,
        deps: dict[str, str] | None = None,
        cancel: threading.Event | None = None,
        **kwargs,
    ) -> OperationResult:
        def artifact(rel: str, text: str) -> Artifact:
            path = self.folder / "blueprint" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return Artifact(rel, path)

        task = Task(
            deployment="dep",
            node="web",
            instance="web/0",
            interface="Standard",
            operation="create",
            implementation=artifact("playbooks/op.yml", playbook),
            dependencies=tuple(artifact(n, t) for n, t in (deps or {}).items()),
            host=self.host,
            **kwargs,
        )
        context = RunContext(
            transport=lambda host: pytest.fail("the ansible executor needs no transport"),
            cancel=cancel or threading.Event(),
            log=lambda stream, line: self.logs.append((stream, line)),
            artifacts_dir=str(self.artifacts_dir) if self.artifacts_dir else None,
            known_hosts=self.known_hosts,
        )
        return AnsibleExecutor().run(task, context)


def play(*tasks: str, gather: bool = False) -> str:
    body = "".join(f"    - {t.strip()}\n".replace("\n", "\n      ").rstrip(" ") for t in tasks)
    return f"- hosts: all\n  gather_facts: {str(gather).lower()}\n  tasks:\n{body}"


@pytest.fixture
def local(tmp_path) -> Run:
    return Run(tmp_path, artifacts_dir=tmp_path / "records")


def test_accepts():
    executor = AnsibleExecutor()
    assert executor.accepts("playbooks/install.yml", None)
    assert executor.accepts("site.YAML", None)
    assert executor.accepts("install", "tosca.artifacts.Implementation.Ansible")
    assert executor.accepts("install", "org.alien4cloud.artifacts.AnsiblePlaybook")
    assert executor.accepts("install", "tosca:Ansible")
    assert executor.accepts("install", "Ansible")
    assert not executor.accepts("install.sh", "tosca.artifacts.Implementation.Bash")
    assert not executor.accepts("install.sh", None)


# -- on this machine ------------------------------------------------------------------------


def test_outputs_from_set_stats_and_set_fact(local):
    result = local(
        play(
            """name: facts
set_fact:
  greeting: "hello {{ WHO }} from {{ NODE }}"
  numbers: [1, 2]""",
            """name: stats
set_stats:
  data:
    url: "http://{{ INSTANCE }}:{{ PORT }}"
    port: "{{ PORT | int }}\"""",
        ),
        inputs={"WHO": "world", "PORT": "8080"},
        environment={"NODE": "web", "INSTANCE": "web/0", "DEPLOYMENT_ID": "dep"},
    )
    assert result.ok, result.message
    assert result.rc == 0 and result.message == ""
    assert result.outputs == {
        "greeting": "hello world from web",
        "numbers": "[1, 2]",
        "url": "http://web/0:8080",
        "port": "8080",
    }
    assert "TASK [facts] " in " ".join(result.stdout_tail)
    assert result.stdout_tail[-1].startswith("localhost") and "failed=0" in result.stdout_tail[-1]
    logged = [line for stream, line in local.logs if stream == "stdout"]
    assert any(line.startswith("TASK [stats]") for line in logged)
    # the records stay in the private data dir: events, stdout, rc
    records = local.artifacts_dir / "artifacts"
    (run,) = records.iterdir()
    assert (run / "rc").read_text().strip() == "0"
    assert "TASK [facts]" in (run / "stdout").read_text()
    events = [json.loads(p.read_text()) for p in (run / "job_events").glob("*.json")]
    assert "playbook_on_stats" in {e["event"] for e in events}
    assert (local.artifacts_dir / "project" / "playbooks" / "op.yml").is_file()


def test_failed_task_named_with_its_message(local):
    result = local(
        play(
            "name: prepare\ndebug: msg=fine",
            'name: install the thing\ncommand: sh -c "echo disk is full >&2; exit 3"',
            "name: never\ndebug: msg=unreachable",
        )
    )
    assert result.status == "failed" and result.rc not in (0, None)
    assert result.message == "task 'install the thing' failed on localhost: disk is full (rc 3)"
    assert not any("TASK [never]" in line for line in result.stdout_tail)
    assert len(result.stdout_tail) <= TAIL_LINES


def test_failed_module_message(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    result = Run(tmp_path)(play("name: check\nfail:\n  msg: the cluster is not ready"))
    assert result.status == "failed"
    assert result.message == "task 'check' failed on localhost: the cluster is not ready"
    # no records asked for: the temporary private data dir is gone
    assert list(temporary.iterdir()) == []


def test_ignored_failure_is_not_the_reason(tmp_path):
    result = Run(tmp_path)(
        play(
            "name: optional\ncommand: /bin/false\nignore_errors: true",
            "name: set\nset_fact:\n  after: done",
        )
    )
    assert result.ok, result.message
    assert result.outputs == {"after": "done"}


def test_syntax_error_reported(tmp_path):
    run = Run(tmp_path)
    result = run("- hosts: all\n  tasks:\n    - name: x\n      no_such_module: {}\n")
    assert result.status == "failed"
    assert result.message.startswith("ansible-playbook exit status ")
    assert "on localhost" in result.message
    assert any("no_such_module" in line for _, line in run.logs)


def test_secrets_masked_everywhere(local):
    secret = 'pa"ss\\word-42'
    result = local(
        play(
            'name: show\ndebug:\n  msg: "the token is {{ TOKEN }}"',
            'name: keep\nset_fact:\n  url: "https://u:{{ TOKEN }}@example.org"',
            'name: export\nset_stats:\n  data:\n    token: "{{ TOKEN }}"',
            'name: fail\nfail:\n  msg: "bad token {{ TOKEN }}"',
        ),
        inputs={"TOKEN": secret},
        secret_values=(secret,),
    )
    assert result.status == "failed"
    assert result.message == f"task 'fail' failed on localhost: bad token {MASK}"
    assert any(f"the token is {MASK}" in line for line in result.stdout_tail)
    everything = [result.message, *result.stdout_tail, *(line for _, line in local.logs)]
    assert any(MASK in line for _, line in local.logs)
    escaped = json.dumps(secret)[1:-1]
    for path in local.artifacts_dir.rglob("*"):
        if path.is_file() and "project" not in path.relative_to(local.artifacts_dir).parts:
            everything.append(path.read_text(errors="replace"))
    assert not [text for text in everything if secret in text or escaped in text]
    assert MASK in (next((local.artifacts_dir / "artifacts").iterdir()) / "stdout").read_text()


def test_secret_outputs_masked(local):
    result = local(
        play('name: keep\nset_fact:\n  url: "https://u:{{ TOKEN }}@example.org"'),
        inputs={"TOKEN": "hunter2"},
        secret_values=("hunter2",),
    )
    assert result.ok, result.message
    assert result.outputs == {"url": f"https://u:{MASK}@example.org"}


def test_timeout(tmp_path):
    started = time.monotonic()
    result = Run(tmp_path)(play("name: wait\ncommand: sleep 41.5"), timeout=2)
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and result.rc is None
    assert result.message == "timed out after 2 s on localhost"
    assert elapsed < 15
    assert not _sleepers("41.5")


def test_cancel(tmp_path):
    cancel = threading.Event()
    run = Run(tmp_path)

    def watch():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            "TASK [wait]" in line for _, line in list(run.logs)
        ):
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    started = time.monotonic()
    result = run(play("name: wait\ncommand: sleep 42.5"), cancel=cancel, timeout=60)
    assert result.status == "cancelled" and result.message == "cancelled"
    assert time.monotonic() - started < 20
    assert not _sleepers("42.5")


def test_cancelled_before_start(tmp_path):
    cancel = threading.Event()
    cancel.set()
    result = Run(tmp_path)(play("debug: msg=no"), cancel=cancel)
    assert result.status == "cancelled" and not result.started


def test_artifact_name_outside_project_refused(tmp_path):
    result = Run(tmp_path)(play("debug: msg=no"), deps={"../escape.txt": "x"})
    assert result.status == "failed" and not result.started
    assert "must be a path inside" in result.message


def _sleepers(argument: str, settle: float = 5) -> list[int]:
    """Processes still running ``sleep <argument>`` (the operation must kill its children),
    once they are gone or after ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline[:2] == [b"sleep", argument.encode()]:
                    found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- over SSH -------------------------------------------------------------------------------

# Interpreter discovery picks root's pyenv shim on this machine, which fails without a shell
# init: an operation input (an extra var) names the interpreter, as a blueprint can.
PYTHON = {"ansible_python_interpreter": "/usr/bin/python3"}

REMOTE_PLAY = play(
    'name: ship the data\ncopy:\n  src: files/data.txt\n  dest: "{{ DEST }}"',
    'name: read it back\nshell: cat "{{ DEST }}" && id -un\nregister: shipped',
    'name: results\nset_fact:\n  content: "{{ shipped.stdout_lines[0] }}"\n'
    '  remote_user: "{{ shipped.stdout_lines[1] }}"',
    'name: cleanup\nfile:\n  path: "{{ DEST }}"\n  state: absent',
)


@pytest.mark.parametrize("who", ["root", "unprivileged"])
def test_playbook_over_ssh(who, ssh_server, ssh_host, ssh_user_host, tmp_path):
    host = ssh_host if who == "root" else ssh_user_host
    dest = f"/tmp/orch-ansible-{who}-{os.getpid()}.txt"
    run = Run(
        tmp_path,
        host,
        known_hosts=[str(ssh_server.known_hosts)],
        artifacts_dir=tmp_path / "records",
    )
    result = run(
        REMOTE_PLAY,
        deps={"playbooks/files/data.txt": "payload 42\n"},
        inputs={"DEST": dest, **PYTHON},
    )
    assert result.ok, result.message
    assert result.outputs == {"content": "payload 42", "remote_user": host.user}
    assert not os.path.exists(dest)
    assert any(f"ok: [{host.name}]" in line for _, line in run.logs)


def test_private_key_text(ssh_server, ssh_user_host, tmp_path):
    key = Path(ssh_server.client_key).read_text()
    host = Host(
        "site",
        address="127.0.0.1",
        port=ssh_server.port,
        user=ssh_server.unprivileged_user,
        private_key=key,
    )
    run = Run(
        tmp_path,
        host,
        known_hosts=[str(ssh_server.known_hosts)],
        artifacts_dir=tmp_path / "records",
    )
    result = run(
        play(
            "name: who\ncommand: id -un\nregister: me",
            'set_fact:\n  remote_user: "{{ me.stdout }}"',
        ),
        inputs=PYTHON,
    )
    assert result.ok, result.message
    assert result.outputs == {"remote_user": ssh_server.unprivileged_user}
    assert not (tmp_path / "records" / KEY_FILE).exists()


def test_failure_over_ssh_names_the_host(ssh_server, ssh_host, tmp_path):
    run = Run(tmp_path, ssh_host, known_hosts=[str(ssh_server.known_hosts)])
    result = run(play("name: install\nshell: echo no space left >&2; exit 5"), inputs=PYTHON)
    assert result.status == "failed"
    assert result.message == (
        f"task 'install' failed on root@127.0.0.1:{ssh_server.port}: no space left (rc 5)"
    )


def test_unknown_host_key_refused(ssh_server, ssh_host, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    run = Run(tmp_path, ssh_host, known_hosts=[str(empty)])
    touch = "name: touch\nfile:\n  path: /tmp/orch-should-not-exist\n  state: touch"
    result = run(play(touch), inputs=PYTHON)
    assert result.status == "failed"
    assert result.message.startswith(f"task 'touch' failed on {ssh_host.describe()}: ")
    assert "Host key verification failed" in result.message
    assert empty.read_text() == ""
    assert not os.path.exists("/tmp/orch-should-not-exist")


def test_project_ansible_cfg_is_read(local):
    """ansible-playbook reads ansible.cfg from its working dir, the project: the server, which
    has read its configuration long before, leaves such a project to ansible-runner."""
    result = local(
        play("""name: read the configuration
set_fact:
  timeout: "{{ lookup('config', 'DEFAULT_TIMEOUT') }}\""""),
        deps={"ansible.cfg": "[defaults]\ntimeout = 77\n"},
    )
    assert result.ok, result.message
    assert result.outputs == {"timeout": "77"}


# -- the fork server ------------------------------------------------------------------------


def _server() -> ansible_server.ForkServer:
    server = ansible_server.current_server()
    assert server is not None and server.dead is None
    return server


@fork_server_only
def test_fork_server_runs_playbooks_at_once(tmp_path):
    """Four operations from four threads run together in one server: each playbook waits until
    all four have started (it would time out if they ran one after the other)."""
    Run(tmp_path / "first")(play("debug: msg=start"))
    server = _server()
    gate = tmp_path / "gate"
    gate.mkdir()
    wait_for_all = (
        f"name: wait for the others\nshell: touch {gate}/{{{{ N }}}}; "
        f"for i in $(seq 200); do [ $(ls {gate} | wc -l) -ge 4 ] && exit 0; sleep 0.1; done; "
        "exit 1"
    )
    results: dict[int, OperationResult] = {}

    def operation(n: int) -> None:
        results[n] = Run(tmp_path / str(n))(
            play(wait_for_all, 'set_fact:\n  got: "{{ N }}"'), inputs={"N": str(n)}
        )

    threads = [threading.Thread(target=operation, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {n: (r.status, r.message, r.outputs) for n, r in results.items()} == {
        n: ("ok", "", {"got": str(n)}) for n in range(4)
    }
    assert _server() is server and running(server.pid)
    assert _children(os.getpid(), SERVER_MODULE) == [server.pid]


@fork_server_only
def test_fork_server_death_fails_the_operation_then_a_new_one_starts(tmp_path, monkeypatch):
    """The server killed under a running playbook: the operation fails naming the host and why,
    the orphaned playbook is killed, and the next operation starts a new server."""
    # a server of its own (another environment), whose temporary dir is left here when killed
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "server-tmp"))
    run = Run(tmp_path)
    assert run(play("debug: msg=start")).ok
    server = _server()

    def kill_when_waiting():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("TASK [wait]" in t for _, t in run.logs):
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)

    threading.Thread(target=kill_when_waiting, daemon=True).start()
    result = run(play("name: wait\ncommand: sleep 43.5"), timeout=60)
    assert result.status == "failed" and result.started and result.rc is None
    assert result.message == (
        "the ansible fork server died while running web/0 Standard.create on localhost: "
        "it was killed by SIGKILL"
    )
    assert not _sleepers("43.5")  # the orphaned playbook is killed too
    again = run(play('set_fact:\n  fine: "yes"'))
    assert again.ok, again.message
    assert again.outputs == {"fine": "yes"}
    assert _server().pid != server.pid


@fork_server_only
def test_fork_server_that_cannot_start(tmp_path, monkeypatch):
    """A server that dies before its first playbook: the operation did not start (the engine
    may retry it); a later operation gets a new server."""
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-python-here"))
    result = Run(tmp_path)(play("debug: msg=never"))
    assert result.status == "failed" and not result.started
    assert result.message.startswith(
        "the ansible fork server could not run web/0 Standard.create on localhost: "
        "it exited with status 1"
    )
    monkeypatch.delenv("PYTHONHOME")
    assert Run(tmp_path)(play("debug: msg=now")).ok


ORPHAN_SCRIPT = """
import sys, threading
from pathlib import Path
from orch.executors.ansible import AnsibleExecutor
from orch.executors.base import Artifact, Task, RunContext

playbook = Path(sys.argv[1])
playbook.write_text(
    "- hosts: all\\n  gather_facts: false\\n  tasks:\\n"
    "    - name: wait\\n      command: sleep 44.5\\n"
)
task = Task("dep", "web", "web/0", "Standard", "create", Artifact("op.yml", playbook))
context = RunContext(
    transport=None, cancel=threading.Event(), log=lambda s, l: print(l, flush=True)
)
AnsibleExecutor().run(task, context)
"""


@fork_server_only
def test_fork_server_exits_when_orch_is_killed(tmp_path):
    """orch killed with SIGKILL: its server notices, kills the playbook it runs, and exits."""
    orch = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "op.yml")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    try:
        for line in orch.stdout:
            if "TASK [wait]" in line:
                break
        servers = _children(orch.pid, SERVER_MODULE)
        assert len(servers) == 1
        deadline = time.monotonic() + 10
        while not _sleepers("44.5", settle=0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sleepers("44.5", settle=0)
        orch.send_signal(signal.SIGKILL)
        orch.wait(10)
        deadline = time.monotonic() + 10
        while running(servers[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(servers[0])
        assert not _sleepers("44.5")
    finally:
        orch.kill()
        orch.wait(10)
        orch.stdout.close()


def _children(parent: int, marker: bytes) -> list[int]:
    """Live children of ``parent`` whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == parent and marker in cmdline and running(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_a_warning_is_not_why_the_fork_server_died():
    """Libraries print deprecation warnings when Ansible is imported (cryptography 51 does for
    DSA): the reason a dead server gives is its signal or its error, never such a line."""
    from orch.executors.ansible_server import _exit_cause

    warning = (
        "/venv/lib/python3.11/site-packages/paramiko/pkey.py:100: "
        "CryptographyDeprecationWarning: DSA is deprecated\n"
        "  from cryptography.hazmat.primitives.asymmetric import dsa\n"
        "[DEPRECATION WARNING]: something old. This feature will be removed.\n"
    )
    assert _exit_cause(warning, killed=True) is None
    assert _exit_cause(warning, killed=False) is None
    crash = warning + "Traceback (most recent call last):\n  File 'x'\nImportError: no ansible\n"
    assert _exit_cause(crash, killed=False) == "ImportError: no ansible"
    assert _exit_cause("plain last words\n", killed=False) == "plain last words"
