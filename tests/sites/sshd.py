"""A real OpenSSH server on 127.0.0.1 for the transport and executor tests.

It runs the system's ``/usr/sbin/sshd`` with its own config, host key, pid file and authorized
keys under ``root``, so tests exercise exactly what a site's login node does (exec channels,
SFTP, process groups) without touching the machine's own sshd. ``stop()`` also ends the
per-connection processes, so a ``restart()`` drops clients the way a rebooted node does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from orch.state.lock import pid_alive

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port that nothing listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _traversable_by_all(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces or parentheses: the fields start after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first level first)."""
    tree = _children_map()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshServer:
    """An sshd listening on ``127.0.0.1:port``; keys and config live under ``root``.

    sshd reads ``authorized_keys/<user>`` as that user: when a parent of ``root`` is closed to
    others (``mkdtemp`` makes 0700 folders), that folder goes to its own 0755 temporary folder,
    removed by ``stop()``.
    """

    user = "root"
    unprivileged_user = "orchtest"
    users = (user, unprivileged_user)

    def __init__(self, root: Path, port: int, *, set_env: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.port = port
        # for every session (sshd's SetEnv): a site's non-interactive shells read no profile,
        # so e.g. SLURM_CONF of a test cluster has to come from the server
        self.set_env = dict(set_env or {})
        self.config = self.root / "sshd_config"
        self.log = self.root / "sshd.log"
        self.pid_file = self.root / "sshd.pid"
        self.host_key = self.root / "host_ed25519"
        self.client_key = self.root / "client_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.host_key_pub = ""
        self.pid: int | None = None
        self._outside_keys: Path | None = None

    free_port = staticmethod(free_port)

    # -- set-up -----------------------------------------------------------------------------

    def _keygen(self, path: Path, comment: str) -> None:
        if not path.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                check=True, capture_output=True,
            )

    def _ensure_user(self) -> None:
        try:
            pwd.getpwnam(self.unprivileged_user)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", self.unprivileged_user],
                           check=True, capture_output=True)
        # a locked ('!') account is refused by sshd with UsePAM no; '*' only forbids passwords
        subprocess.run(["usermod", "-p", "*", self.unprivileged_user],
                       check=True, capture_output=True)

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._ensure_user()
        self._keygen(self.host_key, "orch-test-host")
        self._keygen(self.client_key, "orch-test-client")
        self.host_key_pub = (self.root / "host_ed25519.pub").read_text().strip()
        key_type, key_b64 = self.host_key_pub.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key_type} {key_b64}\n")
        if _traversable_by_all(self.root):
            authorized = self.root / "authorized_keys"
            authorized.mkdir(exist_ok=True)
        else:
            authorized = self._outside_keys = Path(tempfile.mkdtemp(prefix="orch-sshd-keys-"))
        authorized.chmod(0o755)
        public = (self.root / "client_ed25519.pub").read_text()
        for user in self.users:
            path = authorized / user
            path.write_text(public)
            path.chmod(0o644)
        self.config.write_text(
            "\n".join([
                "ListenAddress 127.0.0.1",
                f"Port {self.port}",
                f"HostKey {self.host_key}",
                f"PidFile {self.pid_file}",
                f"AuthorizedKeysFile {authorized}/%u",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "PrintMotd no",
                "Subsystem sftp internal-sftp",
                "MaxSessions 64",
                "MaxStartups 64",
                *self._set_env_lines(),
                "",
            ])
        )
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t refused {self.config}: {check.stderr.strip()}")

    def _set_env_lines(self) -> list[str]:
        if not self.set_env:
            return []
        for name, value in self.set_env.items():
            if not name.isidentifier() or any(c in value for c in '"\\\n'):
                raise ValueError(f"SetEnv cannot carry {name}={value!r}")
        return ["SetEnv " + " ".join(f'"{name}={value}"' for name, value in self.set_env.items())]

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and return once it accepts connections."""
        self._prepare()
        self.pid_file.unlink(missing_ok=True)
        started = subprocess.run([SSHD, "-f", str(self.config), "-E", str(self.log)],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"sshd did not start: {started.stderr.strip()} (log {self.log})")
        deadline = time.monotonic() + timeout
        while True:
            if self.pid_file.exists() and self._accepts():
                text = self.pid_file.read_text().strip()
                if text:
                    self.pid = int(text)
                    return
            if time.monotonic() > deadline:
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"sshd on port {self.port} not ready after {timeout} s:\n{log}")
            time.sleep(0.01)

    def _accepts(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the listener and every connection it serves (their commands included)."""
        if self.pid is None:
            self._remove_outside_keys()
            return
        pids = [self.pid, *descendants(self.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(pid_alive(pid) for pid in pids) or self._accepts():
            if time.monotonic() > deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        self.pid = None
        self._remove_outside_keys()

    def _remove_outside_keys(self) -> None:
        if self._outside_keys is not None:
            shutil.rmtree(self._outside_keys, ignore_errors=True)
            self._outside_keys = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same host key: clients are dropped."""
        self.stop()
        self.start()

    def sessions(self) -> list[int]:
        """Pids of the processes serving connections now (one monitor per connection)."""
        if self.pid is None:
            return []
        return [pid for pid in _children_map().get(self.pid, []) if pid_alive(pid)]
