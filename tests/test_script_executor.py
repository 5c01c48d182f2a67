"""The script executor on this machine and over SSH to a real sshd: work dirs, outputs the Yorc
way, failures, secrets, timeouts, artifacts and speed."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orch.executors.base import TAIL_LINES, Artifact, Host, OperationResult, RunContext, Task
from orch.executors.script import MASK, ScriptExecutor
from orch.transport.base import HostKeyPolicy
from orch.transport.local import LocalTransport
from sites.processes import running, wait_for_file
from sites.sshd import free_port


@dataclass
class Site:
    """Where operations run in a test, and a shortcut to run one script there."""

    host: Host
    provider: object
    folder: Path
    work_root: str
    executor: ScriptExecutor = field(default_factory=ScriptExecutor)
    logs: list[tuple[str, str]] = field(default_factory=list)

    def task(self, script: str, name: str = "op.sh", *, deps: dict[str, str] | None = None,
             modes: dict[str, int] | None = None, **kwargs) -> Task:
        def artifact(rel: str, text: str) -> Artifact:
            path = self.folder / "blueprint" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if modes and rel in modes:
                path.chmod(modes[rel])
            return Artifact(rel, path)

        kwargs.setdefault("deployment", "dep")
        return Task(node="web", instance="web/0", interface="Standard", operation="create",
                    implementation=artifact(name, script),
                    dependencies=tuple(artifact(n, t) for n, t in (deps or {}).items()),
                    host=self.host, **kwargs)

    def context(self, cancel: threading.Event | None = None,
                work_root: str | None = None) -> RunContext:
        return RunContext(transport=self.provider, cancel=cancel or threading.Event(),
                          log=lambda stream, line: self.logs.append((stream, line)),
                          work_root=work_root or self.work_root)

    def run(self, script: str, name: str = "op.sh", *, cancel: threading.Event | None = None,
            **kwargs) -> OperationResult:
        return self.executor.run(self.task(script, name, **kwargs), self.context(cancel))


@pytest.fixture(params=["local", "ssh"])
def site(request, tmp_path) -> Site:
    work_root = str(tmp_path / "work")
    if request.param == "local":
        return Site(Host("localhost"), lambda host: LocalTransport(), tmp_path, work_root)
    pool = request.getfixturevalue("ssh_pool")
    return Site(request.getfixturevalue("ssh_host"), pool.get, tmp_path, work_root)


@pytest.fixture
def user_site(ssh_pool, ssh_user_host, tmp_path) -> Site:
    """The unprivileged user over SSH, with the default relative work root (in its home)."""
    return Site(ssh_user_host, ssh_pool.get, tmp_path, ".orch-work")


# -- outputs ------------------------------------------------------------------------------


def test_exports_become_outputs(site):
    result = site.run(
        """
        export NEW_ONE="fresh value"
        export CHANGED="after"
        export KEPT="$KEPT"
        NOT_EXPORTED=local
        export ORCH_PRIVATE=x
        cd /tmp
        exit 0
        """,
        inputs={"CHANGED": "before", "KEPT": "same"},
    )
    assert result.status == "ok", result.message
    assert result.outputs == {"NEW_ONE": "fresh value", "CHANGED": "after"}
    assert result.rc == 0 and result.message == "" and result.started


def test_exports_keep_special_values(site):
    result = site.run("""export TRICKY="a 'b' \\"c\\" \\$d
second line=x"
export EMPTY=
""")
    assert result.outputs == {"TRICKY": "a 'b' \"c\" $d\nsecond line=x", "EMPTY": ""}


def test_orch_outputs_file_wins_over_exports(site):
    result = site.run(
        """
        export SAME=from-export
        echo "SAME=from-file" >> "$ORCH_OUTPUTS"
        echo "WITH_EQUALS=a=b" >> "$ORCH_OUTPUTS"
        echo "not an output line" >> "$ORCH_OUTPUTS"
        """
    )
    assert result.outputs == {"SAME": "from-file", "WITH_EQUALS": "a=b"}


def test_inputs_and_environment_reach_the_script(site):
    result = site.run(
        'echo "$NAME|$INSTANCE|$ORCH_OUTPUTS"',
        inputs={"NAME": "input", "INSTANCE": "overridden"},
        environment={"INSTANCE": "web/0"},
    )
    name, instance, outputs_file = result.stdout_tail[0].split("|")
    assert (name, instance) == ("input", "web/0")
    assert outputs_file.endswith("/.orch_outputs")


def test_work_dir_layout_and_cleanup(site):
    result = site.run('pwd; echo "$0"; ls -A')
    assert result.status == "ok"
    pwd, zero, *listing = result.stdout_tail
    pattern = re.escape(f"{site.work_root}/dep/web_0-Standard-create-") + "[0-9a-f]{8}"
    assert re.fullmatch(pattern, pwd)
    assert zero == f"{pwd}/op.sh"
    assert "op.sh" in listing
    assert not os.path.exists(pwd), "the work dir is removed after success"


# -- failures, tails, logs ----------------------------------------------------------------


def test_failure_keeps_work_dir_and_tails(site):
    result = site.run(
        """
        i=1; while [ $i -le 30 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
        printf 'last words'
        exit 3
        """
    )
    assert result.status == "failed" and not result.ok
    assert result.rc == 3 and result.started
    match = re.fullmatch(r"exit status 3 \(work dir kept: (.+)\)", result.message)
    assert match, result.message
    assert os.path.isfile(f"{match.group(1)}/op.sh")
    assert len(result.stdout_tail) == TAIL_LINES
    assert result.stdout_tail[-2:] == ["out 30", "last words"]
    assert result.stderr_tail[0] == "err 11" and result.stderr_tail[-1] == "err 30"


def test_every_line_is_logged_in_order_without_orch_plumbing(site):
    result = site.run("echo one; echo two >&2; export OUT=x; printf three")
    assert result.ok
    assert [line for s, line in site.logs if s == "stdout"] == ["one", "three"]
    assert [line for s, line in site.logs if s == "stderr"] == ["two"]
    assert not any("@orch-" in line or "\0" in line for _, line in site.logs)
    assert result.stdout_tail == ["one", "three"]


def test_script_errors_are_failures_not_exceptions(site):
    result = site.run("set -e\nfalse\necho never")
    assert result.status == "failed" and result.rc == 1
    assert "never" not in result.stdout_tail


def test_secrets_are_masked_everywhere(site):
    secret = "s3cr3t-p@ss"
    result = site.run(
        """
        echo "password is $PASSWORD"
        echo "to stderr: $PASSWORD" >&2
        export DERIVED="x-$PASSWORD-y"
        exit 2
        """,
        inputs={"PASSWORD": secret}, secret_values=(secret, ""),
        deployment=f"dep-{secret}",
    )
    assert result.status == "failed"
    everything = repr((result.stdout_tail, result.stderr_tail, result.message, site.logs))
    assert secret not in everything
    assert result.stdout_tail == [f"password is {MASK}"]
    assert result.stderr_tail == [f"to stderr: {MASK}"]
    assert ("stdout", f"password is {MASK}") in site.logs
    assert f"dep-{MASK}" in result.message

    ok = site.run('export DERIVED="x-$PASSWORD-y"', inputs={"PASSWORD": secret},
                  secret_values=(secret,))
    assert ok.outputs == {"DERIVED": f"x-{MASK}-y"}


# -- interpreters -------------------------------------------------------------------------


def test_python_scripts(site):
    script = """
import os, sys
print("hello", os.environ["WHO"])
with open(os.environ["ORCH_OUTPUTS"], "a") as out:
    out.write("GREETING=hi " + os.environ["WHO"] + "\\n")
os.environ["IGNORED"] = "not an output"
"""
    result = site.run(script, "op.py", inputs={"WHO": "world"})
    assert result.status == "ok", result.stderr_tail
    assert result.stdout_tail == ["hello world"]
    assert result.outputs == {"GREETING": "hi world"}

    failed = site.run("import sys\nprint('bad', file=sys.stderr)\nsys.exit(4)", "op.py")
    assert failed.rc == 4 and failed.stderr_tail == ["bad"]
    assert failed.message.startswith("exit status 4")


def test_shell_interpreters(site):
    dash = site.run('echo "bash=${BASH_VERSION:-none}"', "plain.sh")
    assert dash.stdout_tail == ["bash=none"]
    bash = site.run('arr=(a b c); echo "${#arr[@]} ${arr[1]}"; export N=${#arr[@]}', "op.bash")
    assert bash.ok and bash.stdout_tail == ["3 b"] and bash.outputs == {"N": "3"}
    shebang = site.run('#!/usr/bin/env bash\n[[ -n "$BASH_VERSION" ]] && echo bash', "x.sh")
    assert shebang.stdout_tail == ["bash"]


def test_dependencies_are_copied_under_their_names(site):
    result = site.run(
        """
        . "$(dirname "$0")/lib/common.sh"
        echo "$COMMON"
        cat data/input.txt
        ./bin/tool
        """,
        deps={"lib/common.sh": "COMMON=sourced\n", "data/input.txt": "some data\n",
              "bin/tool": "#!/bin/sh\necho tool ran\n"},
        modes={"bin/tool": 0o755},
    )
    assert result.status == "ok", (result.message, result.stderr_tail)
    assert result.stdout_tail == ["sourced", "some data", "tool ran"]


def test_artifact_names_stay_inside_the_work_dir(site):
    result = site.run("echo hi", deps={"../escape.sh": "echo no"})
    assert result.status == "failed" and not result.started
    assert "must be a path inside the work dir" in result.message


# -- timeouts and cancel ------------------------------------------------------------------


def test_timeout(site, tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    result = site.run(f"sleep 60 & echo $! > {pids}; sleep 61 & echo $! >> {pids}; wait",
                      timeout=0.5)
    assert time.monotonic() - start < 3
    assert result.status == "timeout" and result.rc is None
    assert result.message == "timed out after 0.5 s"
    assert not [pid for pid in map(int, pids.read_text().split()) if running(pid)]


def test_cancel(site, tmp_path):
    pids = tmp_path / "pids"
    cancel = threading.Event()
    threading.Thread(target=lambda: (wait_for_file(pids), cancel.set()), daemon=True).start()
    result = site.run(f"sleep 60 & echo $! > {pids}; wait", cancel=cancel, timeout=30)
    assert result.status == "cancelled" and result.message == "cancelled"
    assert not [pid for pid in map(int, pids.read_text().split()) if running(pid)]


def test_cancelled_before_start(site):
    cancel = threading.Event()
    cancel.set()
    result = site.run("echo should not run", cancel=cancel)
    assert result.status == "cancelled" and not result.started
    assert site.logs == []


def test_accepts():
    executor = ScriptExecutor()
    assert executor.name == "script"
    for implementation in ("scripts/create.sh", "x.bash", "tool.py", "UP.SH"):
        assert executor.accepts(implementation, None)
    for artifact_type in ("tosca.artifacts.Implementation.Bash", "tosca:Bash", "Bash",
                          "tosca.artifacts.Implementation.Python", "tosca:Python", "Python"):
        assert executor.accepts("create", artifact_type)
    assert not executor.accepts("playbook.yml", "tosca.artifacts.Implementation.Ansible")
    assert not executor.accepts("create", None)
    assert not executor.accepts("job.slurm", "Bashful")


# -- over SSH only ------------------------------------------------------------------------


def test_unprivileged_user_with_relative_work_root(user_site):
    failed = user_site.run("id -un; pwd; exit 1")
    assert failed.stdout_tail[0] == "orchtest"
    assert failed.stdout_tail[1].startswith("/home/orchtest/.orch-work/dep/web_0-Standard-")
    ok = user_site.run("export WHO=$(id -un)")
    assert ok.outputs == {"WHO": "orchtest"}
    assert Path(failed.stdout_tail[1]).is_dir() and ok.ok
    shutil.rmtree(failed.stdout_tail[1])


def test_artifacts_are_uploaded_once_per_host(ssh_pool, ssh_host, tmp_path, monkeypatch):
    from orch.transport.ssh import SshTransport

    puts: list[str] = []
    original = SshTransport.put

    def counting_put(self, local_path, remote_path, mode=None):
        puts.append(remote_path)
        return original(self, local_path, remote_path, mode)

    monkeypatch.setattr(SshTransport, "put", counting_put)
    site = Site(ssh_host, ssh_pool.get, tmp_path, str(tmp_path / "work"))
    deps = {"lib/a.sh": "A=1\n"}
    results = [site.run(". ./lib/a.sh; echo $A", deps=deps) for _ in range(5)]
    assert all(r.stdout_tail == ["1"] for r in results)
    assert len(puts) == 2, puts  # the script and its dependency, once each

    shutil.rmtree(tmp_path / "work" / ".artifacts")  # a host whose cache was cleaned
    again = site.run(". ./lib/a.sh; echo $A", deps=deps)
    assert again.ok and again.stdout_tail == ["1"]
    assert len(puts) == 4


def test_host_unreachable_is_not_started(ssh_policy, tmp_path):
    from orch.transport.ssh import TransportPool

    port = free_port()
    pool = TransportPool(ssh_policy, connect_timeout=2)
    host = Host("down", address="127.0.0.1", port=port, user="alice")
    result = Site(host, pool.get, tmp_path, str(tmp_path / "w")).run("echo hi")
    assert result.status == "failed" and result.started is False
    assert result.message == f"alice@127.0.0.1:{port}: connection refused"


def test_unknown_host_key_is_not_started(ssh_host, tmp_path):
    from orch.transport.ssh import TransportPool

    (tmp_path / "kh").write_text("")
    pool = TransportPool(HostKeyPolicy(known_hosts_files=[str(tmp_path / "kh")]))
    result = Site(ssh_host, pool.get, tmp_path, str(tmp_path / "w")).run("echo hi")
    assert result.status == "failed" and result.started is False
    assert "--accept-new-host-keys" in result.message


def test_connection_lost_while_running_is_started(ssh_server_up, ssh_pool, ssh_host, tmp_path):
    flag = tmp_path / "running"
    stopper = threading.Thread(target=lambda: (wait_for_file(flag), ssh_server_up.stop()),
                               daemon=True)
    stopper.start()
    site = Site(ssh_host, ssh_pool.get, tmp_path, str(tmp_path / "work"))
    result = site.run(f"echo yes > {flag}; sleep 30", timeout=20)
    stopper.join()
    assert result.status == "failed" and result.started is True
    assert f"root@127.0.0.1:{ssh_host.port}: connection lost" in result.message


# -- speed --------------------------------------------------------------------------------


def _hundred(site: Site) -> float:
    task = site.task("echo one line")
    context = site.context()
    assert site.executor.run(task, context).ok  # artifacts cached, connection open
    start = time.monotonic()
    with ThreadPoolExecutor(4) as workers:
        results = list(workers.map(lambda _: site.executor.run(task, context), range(100)))
    elapsed = time.monotonic() - start
    assert all(r.ok and r.stdout_tail == ["one line"] for r in results)
    return elapsed


def test_speed_local(tmp_path):
    site = Site(Host("localhost"), lambda host: LocalTransport(), tmp_path, str(tmp_path / "w"))
    elapsed = _hundred(site)
    assert elapsed < 2.0, f"100 local operations took {elapsed:.2f} s"


def test_speed_ssh_one_connection(user_site, ssh_pool):
    # the unprivileged user: root's ~/.bashrc on a developer machine may be slow (sshd runs
    # it for every command), which would measure the machine, not orch
    elapsed = _hundred(user_site)
    assert elapsed < 4.0, f"100 operations over SSH took {elapsed:.2f} s"
    assert ssh_pool.connections_opened == 1
