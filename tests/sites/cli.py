"""The orch CLI against the loopback sites: a runner with its own data folder and HOME, a
credential the site's user accepts, and sites.yaml entries for the test sites."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sites.fixtures import SlurmSite
from sites.slurm import PATH
from sites.sshd import SshServer

ORCH = [sys.executable, "-m", "orch"]
TOKEN = "abcdefghijklmnopqrstuv"


class Orch:
    """Runs orch in ``root`` with its own data folder (credentials) and HOME."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / ".orch-data"  # not "data": blueprints stage folders named so
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("ORCH_SITES", "XDG_CONFIG_HOME")}
        return {
            **env,
            "NO_COLOR": "1",
            "ORCH_DATA_HOME": str(self.data),
            "HOME": str(self.home),
            **extra,
        }

    def __call__(
        self, *args: str, check: int | None = 0, timeout: float = 90, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*ORCH, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**env),
        )
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """orch running in the background (stdout and stderr piped)."""
        return subprocess.Popen(
            [*ORCH, *args], cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=self.env(**env),
        )  # fmt: skip

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


@pytest.fixture
def orch(tmp_path: Path) -> Orch:
    return Orch(tmp_path)


def authorized_keys_file(server: SshServer, user: str) -> Path:
    """The file the test sshd reads ``user``'s authorized keys from (its AuthorizedKeysFile)."""
    for line in server.config.read_text().splitlines():
        if line.startswith("AuthorizedKeysFile "):
            return Path(line.split(None, 1)[1].replace("%u", user))
    raise AssertionError("no AuthorizedKeysFile in the test sshd's config")


@pytest.fixture
def credential(orch: Orch, slurm_site: SlurmSite) -> Iterator[str]:
    """A token whose key the site's unprivileged user accepts (for this test only)."""
    token = orch("credentials", "generate", "--comment", "orch sites test").stdout.strip()
    public = orch("credentials", "public-key", token).stdout
    path = authorized_keys_file(slurm_site.ssh, slurm_site.ssh.unprivileged_user)
    before = path.read_text()
    path.write_text(before + public)
    try:
        yield token
    finally:
        path.write_text(before)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the site's unprivileged user can use (pytest's tmp folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="orch-sites-test-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def site_yaml(site: SlurmSite, token: str, name: str = "hpc1", **settings: Any) -> str:
    values = {
        "host": "127.0.0.1",
        "port": site.ssh.port,
        "user": site.ssh.unprivileged_user,
        "credentials": token,
        "known_hosts": str(site.ssh.known_hosts),
        **settings,
    }
    return f"  {name}: {json.dumps(values)}\n"  # JSON is YAML


def write_slurm_sites(orch: Orch, site: SlurmSite, token: str, name: str = "hpc1") -> None:
    """sites.yaml: the loopback Slurm site as ``name``, its sessions seeing its cluster."""
    environment = {"SLURM_CONF": str(site.cluster.conf), "PATH": PATH}
    orch.write("sites.yaml", "sites:\n" + site_yaml(site, token, name, partition="debug",
                                                    environment=environment))  # fmt: skip


STAND_IN = Path(__file__).parent / "pycompss" / "enqueue_compss"


@pytest.fixture
def compss_bin() -> Iterator[Path]:
    """A folder the site's user can read, with the stand-in enqueue_compss and a stand-in
    `module` command (no module system on the test site) that records what it loads."""
    folder = Path(tempfile.mkdtemp(prefix="orch-compss-"))
    folder.chmod(0o755)
    shutil.copy(STAND_IN, folder / "enqueue_compss")
    (folder / "module").write_text(
        '#!/bin/sh\n# stand-in for Environment Modules/Lmod: records the call\n'
        'echo "module $*" >> "$HOME/modules.calls"\n'
    )
    for tool in folder.iterdir():
        tool.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_until(predicate: Any, what: str, timeout: float = 60, every: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def host_template(server: SshServer, name: str = "site", user: str = "orchtest",
                  indent: int = 4) -> str:  # fmt: skip
    """An ``orch.nodes.Host`` node template for the test sshd (``imports: [orch-types:1.0.0]``),
    the user's key given as a private_key credential."""
    lines = [
        f"{name}:",
        "  type: orch.nodes.Host",
        "  properties: {address: 127.0.0.1}",
        "  capabilities:",
        "    endpoint:",
        "      properties:",
        f"        port: {server.port}",
        f"        credentials: {{user: {user}, token_type: private_key,",
        f"                       token: {server.client_key}}}",
    ]
    return "".join(" " * indent + line + "\n" for line in lines)
