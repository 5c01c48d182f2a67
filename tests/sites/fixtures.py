"""pytest fixtures for the real servers in ``tests/sites`` (registered by tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orch.executors.base import Host
from orch.transport.base import HostKeyPolicy
from sites.slurm import SlurmCluster, missing_binaries
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


# -- Slurm ----------------------------------------------------------------------------------


@dataclass
class SlurmSite:
    """A Slurm cluster and its login node: an sshd whose sessions carry the cluster's
    SLURM_CONF and PATH (non-interactive SSH sessions read no profile), as a real site's do."""

    cluster: SlurmCluster
    ssh: SshServer

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def host(self) -> Host:
        """root on the login node."""
        return Host(self.name, address="127.0.0.1", port=self.ssh.port, user=self.ssh.user,
                    identity_file=str(self.ssh.client_key))

    @property
    def user_host(self) -> Host:
        """The unprivileged user on the login node (home /home/orchtest): jobs run as them."""
        return Host(self.name, address="127.0.0.1", port=self.ssh.port,
                    user=self.ssh.unprivileged_user, identity_file=str(self.ssh.client_key))

    @property
    def policy(self) -> HostKeyPolicy:
        return HostKeyPolicy(known_hosts_files=[str(self.ssh.known_hosts)])


def _slurm_cluster(name: str, nodes: int = 1, gather: bool = False) -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        reason = (f"Slurm not installed (missing {', '.join(missing)}): apt-get install "
                  "slurmctld slurmd slurm-client munge (tests/run.sh does it)")
        print(reason)
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("Slurm tests need root: slurmd runs jobs as other users "
                    "(run tests/run.sh as root, e.g. in a container)")
    # not under pytest's 0700 tmp dirs: users that submit read slurm.conf and the munge socket
    root = Path(tempfile.mkdtemp(prefix=f"orch-slurm-{name}-"))
    cluster = SlurmCluster(root, name, nodes=nodes, gather=gather)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _slurm_site(cluster: SlurmCluster) -> Iterator[SlurmSite]:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed: apt-get install openssh-server "
                    "(tests/run.sh does it)")
    root = Path(tempfile.mkdtemp(prefix=f"orch-sshd-{cluster.name}-"))
    server = SshServer(root, free_port(), set_env=cluster.env)
    try:
        server.start()
        yield SlurmSite(cluster, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster 'hpc1' on 127.0.0.1 for the session (partitions debug, long)."""
    yield from _slurm_cluster("hpc1")


@pytest.fixture(scope="session")
def second_slurm_cluster() -> Iterator[SlurmCluster]:
    """Another cluster, 'hpc2', with its own ports, munge key and state: a second site."""
    yield from _slurm_cluster("hpc2")


@pytest.fixture(scope="session")
def multi_node_slurm_cluster() -> Iterator[SlurmCluster]:
    """'hpc3': three nodes on 127.0.0.1 (one per heterogeneous job component) whose backfill
    scheduler looks every second (it alone starts heterogeneous jobs), and whose slurmd samples
    the steps' CPU and memory every second (sstat)."""
    yield from _slurm_cluster("hpc3", nodes=3, gather=True)


@pytest.fixture(scope="session")
def multi_node_slurm_site(multi_node_slurm_cluster: SlurmCluster) -> Iterator[SlurmSite]:
    """The login node of ``multi_node_slurm_cluster``."""
    yield from _slurm_site(multi_node_slurm_cluster)


@pytest.fixture(scope="session")
def slurm_site(slurm_cluster: SlurmCluster) -> Iterator[SlurmSite]:
    """The login node of ``slurm_cluster``: ssh as root or orchtest, then sbatch/squeue."""
    yield from _slurm_site(slurm_cluster)


@pytest.fixture(scope="session")
def second_slurm_site(second_slurm_cluster: SlurmCluster) -> Iterator[SlurmSite]:
    """The login node of ``second_slurm_cluster``."""
    yield from _slurm_site(second_slurm_cluster)


# -- container builders (tests/sites/podman.py, tests/sites/apptainer.py) ----------------------
from sites.apptainer import apptainer, apptainer_dir  # noqa: E402, F401
from sites.podman import podman, podman_env  # noqa: E402, F401
