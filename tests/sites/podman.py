"""Rootful podman with its own settings and storage for the image tests.

The settings are what podman needs on machines without systemd whose cgroups mix v1 and v2 and
whose processes lack CAP_SYS_RESOURCE: runc (crun refuses hybrid cgroups), the cgroupfs manager,
a file events log, lower default ulimits, and vfs storage in a temporary folder. They reach
podman through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, which orch passes through as it
would a user's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
INSTALL = "apt-get install podman buildah runc busybox-static (tests/run.sh does it)"


@dataclass
class Podman:
    """podman with this session's settings (``env``) and storage under ``root``."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
        }

    def write_settings(self) -> None:
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root}/storage"\n'
            f'runroot = "{self.root}/run"\n'
        )
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            'netns = "none"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.root}/events.log"\n'
        )

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                              env={**os.environ, **self.env}, timeout=120)  # fmt: skip


def static_busybox() -> Path:
    """busybox-static's binary (it runs in an empty image), or skip."""
    if not BUSYBOX.is_file() or b"ld-linux" in BUSYBOX.read_bytes()[:8192]:
        pytest.skip(f"a static busybox is needed at {BUSYBOX}: {INSTALL}")
    return BUSYBOX


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """podman with private settings and storage for the session (removed after it)."""
    missing = [b for b in ("podman", "runc") if shutil.which(b) is None]
    if missing:
        reason = f"podman tests skipped: {', '.join(missing)} not installed: {INSTALL}"
        print(f"\n*** {reason}")
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("podman tests need root (rootful podman, no subuid set-up): run as root")
    root = Path(tempfile.mkdtemp(prefix="orch-podman-"))
    engine = Podman(root)
    engine.write_settings()
    try:
        yield engine
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def podman_env(podman: Podman, monkeypatch: pytest.MonkeyPatch) -> Podman:
    """The session's podman settings in this test's environment (orch passes them on)."""
    for name, value in podman.env.items():
        monkeypatch.setenv(name, value)
    return podman
