"""pytest fixtures for the real servers in ``tests/sites`` (registered by tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.executors.base import Host
from orch.transport.base import HostKeyPolicy
from sites.sshd import SSHD, SshServer, free_port


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    """One sshd for the whole session on 127.0.0.1 (tests that stop it start it again)."""
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed: apt-get install openssh-server "
                    "(tests/run.sh does it)")
    if os.geteuid() != 0:
        pytest.skip("SSH tests need root: they create the user 'orchtest' and /run/sshd "
                    "(run tests/run.sh as root, e.g. in a container)")
    # not under pytest's tmp dirs: those are 0700, and sshd reads authorized keys as the user
    root = Path(tempfile.mkdtemp(prefix="orch-sshd-"))
    server = SshServer(root, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ssh_server_up(ssh_server: SshServer) -> Iterator[SshServer]:
    """The session's sshd, started again after the test if the test stopped it."""
    yield ssh_server
    if ssh_server.pid is None:
        ssh_server.start()


@pytest.fixture
def ssh_host(ssh_server: SshServer) -> Host:
    """root on the test sshd, with the authorized client key."""
    return Host("site", address="127.0.0.1", port=ssh_server.port, user=ssh_server.user,
                identity_file=str(ssh_server.client_key))


@pytest.fixture
def ssh_user_host(ssh_server: SshServer) -> Host:
    """The unprivileged user on the test sshd (home /home/orchtest)."""
    return Host("site", address="127.0.0.1", port=ssh_server.port,
                user=ssh_server.unprivileged_user, identity_file=str(ssh_server.client_key))


@pytest.fixture
def ssh_policy(ssh_server: SshServer) -> HostKeyPolicy:
    return HostKeyPolicy(known_hosts_files=[str(ssh_server.known_hosts)])


@pytest.fixture
def ssh_pool(ssh_policy: HostKeyPolicy):
    """A transport pool for the test sshd, closed after the test."""
    from orch.transport.ssh import TransportPool

    pool = TransportPool(ssh_policy, connect_timeout=5)
    yield pool
    pool.close_all()
