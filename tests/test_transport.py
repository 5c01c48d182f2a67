"""Transports against the real machine and a real OpenSSH server on 127.0.0.1.

Every behaviour that both transports promise is checked on both (``transport`` fixture);
host keys, reconnection and pooling are SSH only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orch.executors.base import Host
from orch.transport.base import HostKeyError, HostKeyPolicy, TransportError
from orch.transport.local import LocalTransport
from sites.processes import running, wait_for_file
from sites.sshd import free_port

# -- helpers ------------------------------------------------------------------------------






@pytest.fixture(params=["local", "ssh"])
def transport(request, tmp_path):
    """The same contract on this machine and over SSH (as root, so tmp_path is shared)."""
    if request.param == "local":
        yield LocalTransport()
        return
    pool = request.getfixturevalue("ssh_pool")
    yield pool.get(request.getfixturevalue("ssh_host"))


# A tree of processes: a background sleep and a foreground one, their pids in a file.
TREE = "sleep 60 & echo $! > {pids}; sleep 61 & echo $! >> {pids}; wait"


# -- both transports ----------------------------------------------------------------------


def test_run_returns_status_and_output(transport):
    result = transport.run("echo out; echo err >&2; printf 'no newline'; exit 3")
    assert result.rc == 3
    assert result.stdout == "out\nno newline"
    assert result.stderr == "err\n"
    assert not result.timed_out and not result.cancelled


def test_large_output_arrives_whole(transport):
    lines: list[str] = []
    result = transport.run(
        "i=0; while [ $i -lt 20000 ]; do echo \"line $i of output\"; i=$((i+1)); done; "
        "echo done >&2; printf end",
        on_line=lambda stream, line: lines.append(line) if stream == "stdout" else None,
    )
    expected = [f"line {i} of output" for i in range(20000)] + ["end"]
    assert result.rc == 0
    assert result.stdout.split("\n") == expected
    assert lines == expected
    assert result.stderr == "done\n"


def test_lines_are_streamed_as_they_come(transport):
    seen: list[tuple[str, str, float]] = []
    start = time.monotonic()
    result = transport.run(
        "echo first; echo oops >&2; sleep 0.6; echo second; printf tail",
        on_line=lambda stream, line: seen.append((stream, line, time.monotonic() - start)),
    )
    assert result.rc == 0
    assert [(s, line) for s, line, _ in seen if s == "stdout"] == [
        ("stdout", "first"), ("stdout", "second"), ("stdout", "tail")]
    assert [line for s, line, _ in seen if s == "stderr"] == ["oops"]
    first_at = next(t for s, line, t in seen if line == "first")
    second_at = next(t for s, line, t in seen if line == "second")
    assert second_at - first_at > 0.4, "the first line must arrive before the command ends"


@pytest.mark.parametrize("value", [
    "two words", "it's \"quoted\"", "line one\nline two\n", "$HOME and `id` and $(id)",
    "back\\slash", "tab\there", "", "ünïcødé ✓", "-n",
])
def test_env_values_arrive_verbatim(transport, value):
    result = transport.run('printf "%s" "$ORCH_T_VALUE"', env={"ORCH_T_VALUE": value})
    assert result.rc == 0
    assert result.stdout == value


def test_cwd(transport, tmp_path):
    (tmp_path / "here.txt").write_text("x")
    result = transport.run("pwd; ls", cwd=str(tmp_path))
    assert result.stdout.splitlines() == [str(tmp_path), "here.txt"]


def test_stdin(transport):
    result = transport.run("cat; echo; wc -c", stdin=b"hello")
    assert result.stdout.splitlines() == ["hello", "0"]


def test_no_stdin_reads_eof(transport):
    result = transport.run("cat; echo done", timeout=5)
    assert result.rc == 0 and result.stdout == "done\n"


def test_files(transport, tmp_path):
    folder = f"{tmp_path}/a/b/c"
    transport.makedirs(folder)
    transport.makedirs(folder)  # exists already: fine
    assert os.path.isdir(folder)

    transport.put_bytes(b"data\x00\xff", f"{folder}/blob", mode=0o640)
    assert transport.get_bytes(f"{folder}/blob") == b"data\x00\xff"
    assert os.stat(f"{folder}/blob").st_mode & 0o777 == 0o640

    source = tmp_path / "tool.sh"
    source.write_text("#!/bin/sh\necho tool\n")
    source.chmod(0o751)
    transport.put(str(source), f"{folder}/kept")
    assert os.stat(f"{folder}/kept").st_mode & 0o777 == 0o751
    transport.put(str(source), f"{folder}/set", mode=0o600)
    assert os.stat(f"{folder}/set").st_mode & 0o777 == 0o600
    assert transport.run(f"{folder}/kept").stdout == "tool\n"

    transport.remove_tree(f"{tmp_path}/a")
    assert not os.path.exists(f"{tmp_path}/a")
    transport.remove_tree(f"{tmp_path}/a")  # already gone: fine


def test_file_errors_name_the_path(transport, tmp_path):
    with pytest.raises(TransportError, match=r"missing\.bin"):
        transport.get_bytes(f"{tmp_path}/missing.bin")
    with pytest.raises(TransportError, match="no/such/dir/f"):
        transport.put_bytes(b"x", f"{tmp_path}/no/such/dir/f")


def test_home(transport):
    assert transport.home() == "/root"


def test_timeout_kills_the_process_tree(transport, tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    result = transport.run(TREE.format(pids=pids), timeout=0.5)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.rc is None and not result.cancelled
    assert 0.5 <= elapsed < 3.0
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    assert not [pid for pid in children if running(pid)], "the command's children survived"


def test_cancel_kills_the_process_tree(transport, tmp_path):
    pids = tmp_path / "pids"
    cancel = threading.Event()
    threading.Thread(target=lambda: (wait_for_file(pids), cancel.set()), daemon=True).start()
    start = time.monotonic()
    result = transport.run(TREE.format(pids=pids), cancel=cancel, timeout=30)
    assert result.cancelled and result.rc is None and not result.timed_out
    assert time.monotonic() - start < 5
    children = [int(p) for p in pids.read_text().split()]
    assert not [pid for pid in children if running(pid)], "the command's children survived"


def test_background_child_holding_output_does_not_block(transport, tmp_path):
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    result = transport.run(f"sleep 30 & echo $! > {pid_file}; echo started")
    assert result.rc == 0 and result.stdout.startswith("started")
    assert time.monotonic() - start < 3
    os.kill(int(pid_file.read_text()), 9)


# -- local only ---------------------------------------------------------------------------


def test_local_environment_is_inherited(monkeypatch):
    monkeypatch.setenv("ORCH_T_INHERITED", "yes")
    result = LocalTransport().run('echo "$ORCH_T_INHERITED $ORCH_T_GIVEN"',
                                  env={"ORCH_T_GIVEN": "too"})
    assert result.stdout == "yes too\n"


def test_local_overhead_is_small():
    transport = LocalTransport()
    start = time.monotonic()
    for _ in range(50):
        assert transport.run("true").rc == 0
    assert (time.monotonic() - start) / 50 < 0.010


# -- SSH ----------------------------------------------------------------------------------


def test_paramiko_is_imported_only_by_the_ssh_module():
    code = ("import sys, orch.transport, orch.transport.local, orch.executors.script; "
            "sys.exit('paramiko' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ssh_pool_gives_local_transport_for_local_hosts(ssh_pool):
    assert isinstance(ssh_pool.get(Host("localhost")), LocalTransport)
    assert ssh_pool.connections_opened == 0


def test_ssh_one_connection_for_many_operations_and_threads(ssh_pool, ssh_user_host):
    transport = ssh_pool.get(ssh_user_host)
    assert ssh_pool.get(ssh_user_host) is transport
    with ThreadPoolExecutor(4) as workers:
        results = list(workers.map(lambda i: transport.run(f"echo {i}"), range(40)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(40)]
    assert ssh_pool.connections_opened == 1


def test_ssh_channels_run_concurrently(ssh_pool, ssh_user_host):
    transport = ssh_pool.get(ssh_user_host)
    transport.run("true")
    start = time.monotonic()
    with ThreadPoolExecutor(4) as workers:
        results = list(workers.map(lambda i: transport.run("sleep 0.5"), range(4)))
    assert all(r.rc == 0 for r in results)
    assert time.monotonic() - start < 1.5, "four 0.5 s commands should overlap on one connection"
    assert ssh_pool.connections_opened == 1


def test_ssh_commands_per_connection_are_capped(ssh_policy, ssh_user_host):
    # sshd refuses sessions beyond its MaxSessions (10 by default): the transport queues
    from orch.transport.ssh import TransportPool

    pool = TransportPool(ssh_policy, max_channels=2)
    transport = pool.get(ssh_user_host)
    transport.run("true")
    start = time.monotonic()
    with ThreadPoolExecutor(4) as workers:
        results = list(workers.map(lambda i: transport.run("sleep 0.4"), range(4)))
    elapsed = time.monotonic() - start
    pool.close_all()
    assert all(r.rc == 0 for r in results)
    assert 0.8 <= elapsed < 2.0


def test_ssh_cancel_while_waiting_for_a_channel(ssh_policy, ssh_user_host):
    from orch.transport.ssh import TransportPool

    pool = TransportPool(ssh_policy, max_channels=1)
    transport = pool.get(ssh_user_host)
    flag = Path("/tmp/orch-t-busy")
    flag.unlink(missing_ok=True)
    busy = threading.Thread(target=lambda: transport.run(f"echo x > {flag}; sleep 1"))
    busy.start()
    wait_for_file(flag)
    cancel = threading.Event()
    cancel.set()
    start = time.monotonic()
    result = transport.run("echo never", cancel=cancel)
    waited = time.monotonic() - start
    busy.join()
    pool.close_all()
    flag.unlink()
    assert result.cancelled and result.rc is None and result.stdout == ""
    assert waited < 0.5, "a cancelled command must not wait for the busy channel"


def test_ssh_env_values_stay_off_command_lines(ssh_pool, ssh_user_host, tmp_path):
    # other users of a login node can read every command line with ps
    secret = "orch-t-" + os.urandom(8).hex()
    flag = Path(f"/tmp/orch-t-flag-{os.getpid()}")
    flag.unlink(missing_ok=True)
    seen: list[str] = []

    def scan() -> None:
        wait_for_file(flag)
        for entry in Path("/proc").iterdir():
            try:
                if secret.encode() in (entry / "cmdline").read_bytes():
                    seen.append((entry / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
        flag.unlink()

    scanner = threading.Thread(target=scan)
    scanner.start()
    result = ssh_pool.get(ssh_user_host).run(
        f'echo x > {flag}; while [ -f {flag} ]; do sleep 0.02; done; echo "$TOKEN"',
        env={"TOKEN": secret}, timeout=10)
    scanner.join()
    assert result.stdout == f"{secret}\n"
    assert seen == []


def test_ssh_bash_started_by_a_command_does_not_reread_bashrc(ssh_pool, ssh_user_host):
    # sshd's bash reads ~/.bashrc; a bash started by the command must not read it again
    bashrc = Path("/home/orchtest/.bashrc")
    saved = bashrc.read_bytes() if bashrc.exists() else None
    bashrc.write_text('export ORCH_T_READS="${ORCH_T_READS}x"\n' + (saved or b"").decode())
    try:
        result = ssh_pool.get(ssh_user_host).run("""bash -c 'echo "$ORCH_T_READS"'""")
    finally:
        if saved is None:
            bashrc.unlink()
        else:
            bashrc.write_bytes(saved)
    assert result.stdout == "x\n"


def test_ssh_unprivileged_user(ssh_pool, ssh_user_host):
    transport = ssh_pool.get(ssh_user_host)
    assert transport.run("id -un").stdout == "orchtest\n"
    assert transport.home() == "/home/orchtest"
    transport.put_bytes(b"mine", "/home/orchtest/orch-t-file")
    assert transport.get_bytes("/home/orchtest/orch-t-file") == b"mine"
    transport.remove_tree("/home/orchtest/orch-t-file")
    with pytest.raises(TransportError, match="Permission denied"):
        transport.put_bytes(b"x", "/root/orch-t-not-allowed")


def test_ssh_timeout_kills_tree_of_unprivileged_user(ssh_pool, ssh_user_host):
    transport = ssh_pool.get(ssh_user_host)
    pids = "/tmp/orch-t-pids-orchtest"
    transport.run(f"rm -f {pids}")
    result = transport.run(TREE.format(pids=pids), timeout=0.5)
    assert result.timed_out
    children = [int(p) for p in Path(pids).read_text().split()]
    Path(pids).unlink()
    assert len(children) == 2 and not [pid for pid in children if running(pid)]


def test_ssh_errors_name_the_host(ssh_policy):
    from orch.transport.ssh import TransportPool

    port = free_port()  # nothing listens there
    pool = TransportPool(ssh_policy, connect_timeout=2)
    transport = pool.get(Host("down", address="127.0.0.1", port=port, user="alice"))
    with pytest.raises(TransportError) as caught:
        transport.run("true")
    assert str(caught.value) == f"alice@127.0.0.1:{port}: connection refused"
    assert caught.value.started is False
    assert caught.value.host == f"alice@127.0.0.1:{port}"


def test_ssh_wrong_key_fails_authentication(ssh_pool, ssh_host, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    host = Host("site", address="127.0.0.1", port=ssh_host.port, user="root",
                identity_file=str(other))
    with pytest.raises(TransportError) as caught:
        ssh_pool.get(host).run("true")
    assert str(caught.value) == (f"root@127.0.0.1:{ssh_host.port}: authentication failed "
                                 f"for user root with key {other}")
    assert caught.value.started is False


def test_ssh_password_is_never_in_messages(ssh_pool, ssh_host):
    host = Host("site", address="127.0.0.1", port=ssh_host.port, user="root",
                password="hunter2-secret")
    with pytest.raises(TransportError) as caught:
        ssh_pool.get(host).run("true")
    assert "authentication failed for user root with the given password" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(host)


def test_ssh_private_key_text(ssh_pool, ssh_server, ssh_host):
    host = Host("site", address="127.0.0.1", port=ssh_host.port, user="orchtest",
                private_key=ssh_server.client_key.read_text())
    assert ssh_pool.get(host).run("id -un").stdout == "orchtest\n"
    # another user: the pool keeps one transport per (address, port, user)
    bad = Host("site", address="127.0.0.1", port=ssh_host.port, user="root",
               private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(TransportError, match="not an unencrypted Ed25519, ECDSA or RSA key"):
        ssh_pool.get(bad).run("true")


def test_ssh_missing_identity_file(ssh_pool, ssh_host, tmp_path):
    host = Host("site", address="127.0.0.1", port=ssh_host.port, user="root",
                identity_file=str(tmp_path / "nope"))
    with pytest.raises(TransportError, match=r"cannot read key .*nope: No such file"):
        ssh_pool.get(host).run("true")


# -- host keys ----------------------------------------------------------------------------


def test_ssh_unknown_host_key_is_refused(ssh_host, tmp_path):
    from orch.transport.ssh import TransportPool

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    pool = TransportPool(HostKeyPolicy(known_hosts_files=[str(empty)]))
    with pytest.raises(HostKeyError) as caught:
        pool.get(ssh_host).run("true")
    message = str(caught.value)
    assert "unknown SSH host key" in message
    assert "--accept-new-host-keys" in message
    assert f"ssh-keyscan -p {ssh_host.port} 127.0.0.1 >> ~/.ssh/known_hosts" in message
    assert caught.value.started is False
    assert pool.connections_opened == 0
    assert empty.read_text() == ""


def test_ssh_accept_new_records_the_key(ssh_server, ssh_host, tmp_path):
    from orch.transport.ssh import TransportPool

    empty = tmp_path / "empty"
    empty.write_text("")
    recorded = tmp_path / "new" / "known_hosts"
    pool = TransportPool(HostKeyPolicy(known_hosts_files=[str(empty)], accept_new=True,
                                       known_hosts_file=str(recorded)))
    assert pool.get(ssh_host).run("echo in").stdout == "in\n"
    key_type, key = ssh_server.host_key_pub.split()[:2]
    assert recorded.read_text() == f"[127.0.0.1]:{ssh_host.port} {key_type} {key}\n"
    assert recorded.stat().st_mode & 0o777 == 0o600
    pool.close_all()

    # the recorded key is now known: a strict policy accepts it, nothing more is written
    strict = TransportPool(HostKeyPolicy(known_hosts_files=[str(recorded)]))
    assert strict.get(ssh_host).run("echo again").stdout == "again\n"
    strict.close_all()
    assert recorded.read_text().count("\n") == 1


@pytest.mark.parametrize("accept_new", [False, True])
def test_ssh_changed_host_key_is_refused(ssh_host, tmp_path, accept_new):
    from orch.transport.ssh import TransportPool

    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    key_type, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh_host.port} {key_type} {key}\n")
    before = known.read_text()
    pool = TransportPool(HostKeyPolicy(known_hosts_files=[str(known)], accept_new=accept_new,
                                       known_hosts_file=str(known)))
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        pool.get(ssh_host).run("true")
    assert known.read_text() == before
    assert pool.connections_opened == 0


# -- reconnection and the started flag ----------------------------------------------------


def test_ssh_reconnects_after_server_restart(ssh_server_up, ssh_pool, ssh_host):
    transport = ssh_pool.get(ssh_host)
    assert transport.run("echo one").stdout == "one\n"
    transport.put_bytes(b"x", "/tmp/orch-t-reconnect")
    ssh_server_up.restart()
    assert transport.run("echo two").stdout == "two\n"
    assert ssh_pool.connections_opened == 2
    ssh_server_up.restart()
    transport.put_bytes(b"y", "/tmp/orch-t-reconnect")  # SFTP re-opens too
    assert transport.get_bytes("/tmp/orch-t-reconnect") == b"y"
    transport.remove_tree("/tmp/orch-t-reconnect")
    assert ssh_pool.connections_opened == 3


def test_ssh_server_down_is_not_started(ssh_server_up, ssh_pool, ssh_host):
    transport = ssh_pool.get(ssh_host)
    transport.run("true")
    ssh_server_up.stop()
    with pytest.raises(TransportError) as caught:
        transport.run("true")
    assert caught.value.started is False
    assert f"root@127.0.0.1:{ssh_host.port}: connection refused" in str(caught.value)
    ssh_server_up.start()
    assert transport.run("echo back").stdout == "back\n"


def test_ssh_drop_while_running_is_started(ssh_server_up, ssh_pool, ssh_host, tmp_path):
    transport = ssh_pool.get(ssh_host)
    marker = tmp_path / "running"
    stopper = threading.Thread(
        target=lambda: (wait_for_file(marker), ssh_server_up.stop()), daemon=True)
    stopper.start()
    with pytest.raises(TransportError) as caught:
        transport.run(f"echo yes > {marker}; sleep 30", timeout=20)
    stopper.join()
    assert caught.value.started is True
    assert "connection lost while the command was running" in str(caught.value)
    assert str(caught.value).startswith(f"root@127.0.0.1:{ssh_host.port}: ")
