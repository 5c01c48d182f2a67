"""The record orch processes share their status rounds in (``ORCH_MONITOR_DIR``): private to
the user, rebuilt when it is damaged or gone, and rid of processes that are no more. The
sharing itself is tested against the real Slurm site (tests/test_serve_slurm.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orch.executors.shared_monitor import SharedSiteMonitor
from orch.executors.slurm_scheduler import SLURM_SCHEDULER


def _monitor(folder: Path) -> SharedSiteMonitor:
    return SharedSiteMonitor(SLURM_SCHEDULER, folder, ("orchtest", "127.0.0.1", 22, "slurm"))


def test_the_record_is_private_and_survives_damage(tmp_path: Path) -> None:
    folder = tmp_path / "monitor"
    monitor = _monitor(folder)
    monitor.expect("41")
    assert folder.stat().st_mode & 0o077 == 0
    assert monitor.record.stat().st_mode & 0o077 == 0
    assert json.loads(monitor.record.read_text())["wanted"] == {monitor.pid: {"41": None}}
    monitor.record.write_text("{not json")  # damaged: a round is asked again, nothing more
    monitor.expect("42")
    assert json.loads(monitor.record.read_text())["wanted"] == {monitor.pid: {"42": None}}
    monitor.record.unlink()
    monitor.forget("42")
    assert json.loads(monitor.record.read_text())["wanted"] == {monitor.pid: {}}


def test_a_process_gone_is_no_longer_asked_for(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    monitor.record.write_text(json.dumps({"wanted": {gone: {"7": None}}}))
    monitor.expect("8")
    assert json.loads(monitor.record.read_text())["wanted"] == {monitor.pid: {"8": None}}
