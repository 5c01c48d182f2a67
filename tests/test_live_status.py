"""``orch status NAME --watch``: live figures of running applications from the real loopback
Slurm site (slurmd samples each step's CPU and memory every second there, as sstat reports):
a batch job's and a held allocation's step's CPU time and memory, their elapsed and remaining
time, and the progress the application writes to a file or prints."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sites.cli import Orch, write_slurm_sites
from sites.fixtures import SlurmSite
from sites.hpc import authorize

APPLICATION = '''
"""Busy for a while: holds 60 MB, burns CPU, writes its progress to a file and its output."""
import sys, time
memory = bytearray(60_000_000)
for step in range(1, 101):
    began = time.time()
    while time.time() - began < 0.2:
        pass
    with open("progress.txt", "a") as progress:
        progress.write(f"step {step} of 100\\n")
    print(f"done {step}%", flush=True)
'''

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {{ site: hpc3 }}
    held:
      type: orch.nodes.SlurmAllocation
      properties: {{ tasks: 1, time: 10 m }}
      requirements:
        - host: login
    solver:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/app.py
        progress_file: progress.txt
        time: 20 m
        poll_interval: 0.5 s
      requirements:
        - host: login
    stepped:
      type: orch.nodes.SlurmJob
      properties:
        command: python3 {apps}/app.py
        progress_pattern: 'done (\\d+%)'
        poll_interval: 0.5 s
      requirements:
        - host: held
"""


@pytest.fixture
def token(orch: Orch, multi_node_slurm_site: SlurmSite) -> Iterator[str]:
    yield from authorize(orch, multi_node_slurm_site.ssh)


def test_watch_shows_cpu_memory_time_and_progress_of_running_applications(
    orch: Orch, multi_node_slurm_site: SlurmSite, token: str, shared_dir: Path
) -> None:
    site = multi_node_slurm_site
    write_slurm_sites(orch, site, token, "hpc3")
    (shared_dir / "app.py").write_text(textwrap.dedent(APPLICATION))
    orch.write("live.yaml", BLUEPRINT.format(apps=shared_dir))
    deploy = orch.start("deploy", "live.yaml", "-n", "live", "--poll-interval", "0.5")
    watcher = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both jobs submitted
            shown = orch("status", "live", "-f", "json", check=None)
            if shown.returncode == 0 and len(json.loads(shown.stdout)["jobs"]) == 2:
                break
            time.sleep(0.3)
        watcher = orch.start("status", "live", "--watch", "--every", "0.5", "-f", "json")
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not _complete(seen):
            line = watcher.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            event = json.loads(line)
            assert event["event"] == "live" and event["deployment"] == "live"
            for app in event["applications"]:
                seen[app["instance"]] = app
        assert _complete(seen), (seen, watcher.stderr.read() if watcher.poll() else "")
        solver, stepped = seen["solver/0"], seen["stepped/0"]
        assert solver["job_id"].isdigit() and "." in stepped["job_id"]
        assert solver["nodes"].startswith("hpc3-n") and solver["left"]
        assert stepped["left"]  # the allocation's time left
        assert solver["progress"].startswith("step ") and solver["progress"].endswith(" of 100")
        assert stepped["progress"].endswith("%")
        for app in (solver, stepped):
            assert app["state"] == "RUNNING"
            assert app["cpu_seconds"] > 0 and app["cpu_percent"] > 10
            assert app["max_rss_mb"] > 55, app
        # the text view: a table per round, for people
        watcher.kill()
        watcher = orch.start("status", "live", "--watch", "--every", "0.5")
        header = [watcher.stdout.readline() for _ in range(2)][1]  # type: ignore[union-attr]
        assert header.split() == ["INSTANCE", "JOB", "STATE", "ELAPSED", "LEFT", "NODES", "CPU",
                                  "MEMORY", "PROGRESS"]  # fmt: skip
    finally:
        for proc in (watcher, deploy):
            if proc is not None and proc.poll() is None:
                proc.kill()
        orch("cancel", "live", check=None, timeout=60)
        orch("undeploy", "live", check=None, timeout=120)


def _complete(seen: dict[str, dict[str, Any]]) -> bool:
    return all(
        instance in seen and seen[instance]["cpu_seconds"] and seen[instance]["progress"]
        and (seen[instance]["max_rss_mb"] or 0) > 55
        for instance in ("solver/0", "stepped/0")
    )
