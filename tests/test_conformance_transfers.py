"""The executor contract (tests/conformance.py) for data transfers (``orch.nodes.StageIn`` and
``StageOut``) between orch's machine and the loopback sshd, as its unprivileged user with a
credential token (sites.yaml site ``loop``, no scheduler)."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import LAST_LINE, SECRET, ExecutorConformance, Failing, Harness, authorize
from sites.cli import Orch
from sites.sshd import SshServer

PART = ".orch-part."
BIG = 160 * 1024 * 1024
"""The slow operation's file: long enough over loopback SFTP to interrupt it (sparse here)."""
HEADER = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    secret: {type: string, default: none-given, metadata: {sensitive: true}}
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: loop}
"""
DATA = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n", "sub/deep/c.bin": bytes(range(256))}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@dataclass
class Loop:
    """The site: the loopback sshd, and its work_dir (a folder of its unprivileged user)."""

    server: SshServer
    remote: Path


class TestTransfers(ExecutorConformance):
    failing = Failing("broken", "Standard.start", rc=None)
    expected_outputs = {"files": 3, "skipped": 0, "bytes": sum(map(len, DATA.values())),
                        "fetched": 3}  # fmt: skip
    timeout_args = ("--timeout", "0.5")

    @pytest.fixture
    def site(self, orch: Orch, ssh_server: SshServer) -> Iterator[Any]:
        user = pwd.getpwnam(ssh_server.unprivileged_user)
        remote = Path(user.pw_dir) / f"conformance-{secrets.token_hex(4)}"
        remote.mkdir()
        os.chown(remote, user.pw_uid, user.pw_gid)
        try:
            for token in authorize(orch, ssh_server):
                entry = {"host": "127.0.0.1", "port": ssh_server.port,
                         "user": ssh_server.unprivileged_user, "credentials": token,
                         "known_hosts": str(ssh_server.known_hosts), "scheduler": "none",
                         "work_dir": str(remote)}  # fmt: skip
                orch.write("sites.yaml", f"sites:\n  loop: {json.dumps(entry)}\n")
                yield Loop(ssh_server, remote)
        finally:
            shutil.rmtree(remote, ignore_errors=True)

    def remote(self, h: Harness) -> Path:
        return h.site.remote

    def host(self, h: Harness) -> str:
        return f"{h.site.server.unprivileged_user}@127.0.0.1:{h.site.server.port}"

    def blueprint(self, h: Harness, kind: str) -> str:
        if kind == "ok":
            write_tree(h.root / "dataset", DATA)
            return HEADER + (
                "    inputs:\n"
                "      type: orch.nodes.StageIn\n"
                "      properties: {source: dataset}\n"
                "      requirements: [{host: login}]\n"
                "    results:\n"
                "      type: orch.nodes.StageOut\n"
                "      properties: {source: inputs, destination: fetched}\n"
                "      requirements: [{host: login}, {dependency: inputs}]\n"
                "  outputs:\n"
                "    files: {value: {get_attribute: [inputs, files]}}\n"
                "    skipped: {value: {get_attribute: [inputs, skipped]}}\n"
                "    bytes: {value: {get_attribute: [inputs, bytes]}}\n"
                "    fetched: {value: {get_attribute: [results, files]}}\n"
            )
        if kind == "fail":
            # one file is on the site already (skipped: the line before the failure), and
            # the next cannot be written there: its folder is root's
            write_tree(h.root / "dataset", {LAST_LINE: b"same\n", "zz/locked.txt": b"c\n"})
            (self.remote(h) / h.name / "broken" / "zz").mkdir(parents=True)
            (self.remote(h) / h.name / "broken" / LAST_LINE).write_bytes(b"same\n")
            user = pwd.getpwnam(h.site.server.unprivileged_user)
            for folder in (self.remote(h) / h.name, self.remote(h) / h.name / "broken"):
                os.chown(folder, user.pw_uid, user.pw_gid)
            return HEADER + (
                "    broken:\n"
                "      type: orch.nodes.StageIn\n"
                "      properties: {source: dataset}\n"
                "      requirements: [{host: login}]\n"
            )
        if kind in ("slow", "timeout"):
            big = h.root / "big" / "big.bin"
            big.parent.mkdir(exist_ok=True)
            with open(big, "wb") as handle:
                handle.truncate(BIG)
            return HEADER + (
                "    slow:\n"
                "      type: orch.nodes.StageIn\n"
                "      properties: {source: big}\n"
                "      requirements: [{host: login}]\n"
            )
        if kind == "secret":
            write_tree(h.root / "dataset", DATA)
            return HEADER + (
                "    inputs:\n"
                "      type: orch.nodes.StageIn\n"
                "      properties:\n"
                "        source: dataset\n"
                f"        destination: {{concat: [{self.remote(h)}/, {{get_input: secret}}]}}\n"
                "      requirements: [{host: login}]\n"
                "  outputs:\n"
                "    where: {value: {get_attribute: [inputs, path]}}\n"
            )
        raise AssertionError(kind)

    def cleanup(self, h: Harness) -> None:
        """Nothing runs on after a transfer: what it left is removed with the site's folder."""

    def parts(self, h: Harness) -> list[str]:
        return [str(p) for p in self.remote(h).rglob(f"{PART}*")]

    def started(self, h: Harness) -> bool:
        return any(os.path.getsize(p) > 0 for p in self.parts(h) if os.path.exists(p))

    def leftovers(self, h: Harness) -> list[str]:
        """Half-sent files (temporary names) left on the site (but those of the killed orch
        when ``h.data["killed"]`` says to leave them to their own test)."""
        return [p for p in self.parts(h) if p not in h.data.get("killed", ())]

    def before_kill(self, h: Harness) -> None:
        h.data["killed"] = set(self.parts(h))

    def test_a_resumed_transfer_removes_what_the_killed_one_left(self, h: Harness) -> None:
        """Part of point 5 (nothing left): the half-sent file of the killed orch."""
        import signal

        from conformance import stop

        proc = self.start_slow(h)
        killed = set(self.parts(h))
        os.kill(proc.pid, signal.SIGKILL)
        stop(proc)
        assert killed
        h.deploy(timeout=120)
        assert not [p for p in killed if os.path.exists(p)], killed

    def check_ok(self, h: Harness) -> None:
        staged = self.remote(h) / h.name / "inputs"
        assert tree(staged) == DATA
        assert tree(h.root / "fetched") == DATA
        assert h.attributes("inputs")["path"] == str(staged)
        assert "staged in 3 file(s)" in h.logs()

    def check_failure(self, h: Harness, err: str, record: dict[str, Any]) -> None:
        # no exit status for a transfer: the message names the file, the host and the cause
        target = f"{self.host(h)}:{self.remote(h)}/{h.name}/broken/zz/locked.txt"
        assert (
            f"cannot upload {h.root}/dataset/zz/locked.txt to {target}: Permission denied"
            in (record["message"])
        ), record
        assert not list((self.remote(h) / h.name / "broken").rglob(f"{PART}*"))

    def check_reattached(self, h: Harness, err: str) -> None:
        staged = self.remote(h) / h.name / "slow" / "big.bin"
        assert staged.stat().st_size == BIG
        digest = hashlib.sha256()
        with open(staged, "rb") as handle:
            while chunk := handle.read(8 * 1024 * 1024):
                digest.update(chunk)
        expected = hashlib.sha256()
        zeros = bytes(8 * 1024 * 1024)
        for _ in range(BIG // len(zeros)):
            expected.update(zeros)
        assert digest.hexdigest() == expected.hexdigest()
        assert h.attributes("slow")["files"] + h.attributes("slow")["skipped"] == 1

    def secret_reached(self, h: Harness) -> None:
        assert tree(self.remote(h) / SECRET) == DATA
