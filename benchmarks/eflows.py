#!/usr/bin/env python3
"""eFlows4HPC benchmark: the minimal eFlows4HPC topology (``blueprints/eflows4hpc/minimal``)
deployed and run with orch alone, on a loopback site, as whole ``orch`` processes.

The site is a real Slurm cluster behind a real sshd (``tests/sites``), with the PyCOMPSs
stand-in ``enqueue_compss`` of the tests (the runtime cannot be installed here) and Apptainer for
the image; the data comes from the tests' B2SHARE stand-in on loopback. Measured:

- ``orch deploy``: build the image from the workflow registry and place it on the site (first
  time: built; again on a fresh deployment: from orch's cache);
- ``orch run exec_job``, repeatedly: stage in, submit the PyCOMPSs job, watch it to its end;
- beside each run, the job's own time in Slurm (SubmitTime to EndTime: queued, then running,
  whole seconds) and the orchestration overhead: the run's wall time minus the job's time
  (orch starting, the stage-in, the submit over SSH, noticing the end). Goal (issue 13):
  overhead <= 2 s per execution.

Usage: benchmarks/eflows.py [--runs 5] [--poll-interval 0.5]
Needs root, /usr/sbin/sshd, Slurm (slurmctld, slurmd, munge) and Apptainer (as tests/run.sh
installs them). Progress on stderr, the table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy import REPO
from hpc import Site, say, start_site

ORCH = [sys.executable, "-m", "orch"]
TOPOLOGY = REPO / "blueprints" / "eflows4hpc" / "minimal" / "topology.yml"
SECRETS = [
    ("/secret/data/services_secrets/image_creation", "user", "bench-user"),
    ("/secret/data/services_secrets/image_creation", "password", "bench-Secret-1"),
    ("/secret/data/services_secrets/dls", "username", "bench-user"),
    ("/secret/data/services_secrets/dls", "password", "bench-Secret-2"),
]
APP = 'import sys\nprint(f"wordcount: {len(open(sys.argv[1]).read().split())} words")\n'


class Orch:
    """orch processes with their own data folder, sites.yaml and state, in ``root``."""

    def __init__(self, root: Path, sites: Path, tools: Path):
        self.root = root
        self.env = {**os.environ, "ORCH_DATA_HOME": str(root / "data"),
                    "ORCH_SITES": str(sites), "NO_COLOR": "1",
                    "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip

    def __call__(self, *args: str, stdin: str | None = None) -> float:
        """Run orch; its wall time. A failure stops the benchmark with orch's last lines."""
        started = time.perf_counter()
        proc = subprocess.run([*ORCH, *args], cwd=self.root, env=self.env, input=stdin,
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-8:])
            raise SystemExit(f"orch {' '.join(args)} failed ({proc.returncode}):\n{tail}")
        return time.perf_counter() - started

    def json(self, *args: str) -> dict:
        proc = subprocess.run([*ORCH, *args, "-f", "json"], cwd=self.root, env=self.env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(proc.stdout)


def registry(folder: Path) -> Path:
    """A workflow registry whose step builds offline (busybox from scratch, the app in src/)."""
    from sites.podman import static_busybox

    step = folder / "minimal_workflow" / "wordcount"
    (step / "src").mkdir(parents=True)
    (step / "src" / "wordcount.py").write_text(APP)
    for name in ("busybox", "busybox-sh"):
        shutil.copy2(static_busybox(), step / name)
    (step / "eflows4hpc.yaml").write_text(
        "spack: {specs: []}\n"
        "orch: {base: scratch, files: {busybox: /bin/busybox, busybox-sh: /bin/sh}}\n"
    )
    return folder


def sites_yaml(site: Site, tools: Path, b2share: str, work: Path) -> str:
    from sites.slurm import PATH

    entry = {
        "host": "127.0.0.1", "port": site.ssh.port, "user": site.ssh.unprivileged_user,
        "identity_file": str(site.ssh.client_key), "known_hosts": str(site.ssh.known_hosts),
        "partition": "debug", "work_dir": str(work),
        "environment": {"PATH": f"{tools}:{PATH}", "SLURM_CONF": str(site.cluster.conf),
                        "B2SHARE_SERVER": b2share},
    }  # fmt: skip
    return json.dumps({"sites": {"hpc1": entry}})  # JSON is YAML


def job_seconds(job_id: str, env: dict[str, str]) -> float | None:
    """The job's time in Slurm, SubmitTime to EndTime (queued, then running: what no
    orchestrator can shorten), in whole seconds; None if Slurm forgot the job."""
    proc = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True,
                          text=True)  # fmt: skip
    found = dict(re.findall(r"\b(SubmitTime|EndTime)=(\S+)", proc.stdout))
    if "SubmitTime" not in found or "EndTime" not in found:
        return None
    parse = time.strptime
    start = time.mktime(parse(found["SubmitTime"], "%Y-%m-%dT%H:%M:%S"))
    end = time.mktime(parse(found["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    return end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="orch run exec_job repetitions")
    parser.add_argument("--poll-interval", default="0.5", help="seconds between job polls")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("eflows.py needs root: it starts slurmd, munged and sshd")
    sys.path.insert(0, str(REPO / "tests"))
    from sites.apptainer import find_apptainer
    from sites.web import b2share_record, serve_files

    apptainer = find_apptainer()
    if apptainer is None:
        raise SystemExit("no apptainer: run `bash tests/run.sh` once, which installs it")
    rows: list[tuple[str, float, float | None]] = []
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="orch-bench-eflows-"))
        scratch.chmod(0o755)
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        site = start_site(stack, "hpc1")
        base, files = stack.enter_context(serve_files())
        b2share_record(files, base, "rec-1", {"data.txt": b"one two three\n" * 1000})
        tools = scratch / "tools"
        tools.mkdir()
        shutil.copy(REPO / "tests" / "sites" / "pycompss" / "enqueue_compss", tools)
        (tools / "enqueue_compss").chmod(0o755)
        (tools / "module").write_text("#!/bin/sh\n# stand-in: no module system on this site\n")
        (tools / "module").chmod(0o755)
        os.symlink(apptainer / "apptainer", tools / "apptainer")
        work = scratch / "work"
        work.mkdir(mode=0o777)
        work.chmod(0o777)
        sites = scratch / "sites.yaml"
        sites.write_text(sites_yaml(site, tools, base, work))
        orch = Orch(scratch, sites, tools)  # apptainer builds the image here too
        for path, field, value in SECRETS:
            orch("secrets", "set", path, field, stdin=value)
        shutil.copy(TOPOLOGY, scratch / "topology.yml")
        reg = registry(scratch / "registry")
        inputs = ["-i", "user_id=bench", "-i", "vault_id=0123456789abcdef"]
        say("orch deploy (image built) ...")
        rows.append(("deploy (image built)", orch(
            "deploy", "topology.yml", "-n", "first", *inputs, "--registry", str(reg)), None))
        say("orch deploy of a second deployment (image from orch's cache) ...")
        rows.append(("deploy (image cached)", orch(
            "deploy", "topology.yml", "-n", "second", *inputs, "--registry", str(reg)), None))
        target = work / "staged"
        run = ["run", "exec_job", "-n", "first", "-i", "oid=rec-1", "-i", f"target_path={target}",
               "-i", f"staged_in_data_path={target}", "--poll-interval", args.poll_interval]
        for index in range(args.runs):
            say(f"orch run exec_job ({index + 1}/{args.runs}) ...")
            wall = orch(*run)
            status = orch.json("status", "first")
            job = {i["node"]: i for i in status["instances"]}["PyCOMPSJob"]["attributes"]
            rows.append((f"run exec_job #{index + 1}", wall,
                         job_seconds(str(job["job_id"]), site.cluster.env)))  # fmt: skip
        orch("undeploy", "second")
        orch("undeploy", "first")
    print_table(rows, args.poll_interval)


def print_table(rows: list[tuple[str, float, float | None]], poll: str) -> None:
    print("| step | wall s | job in Slurm s | overhead s |")
    print("|---|---|---|---|")
    overheads = []
    for name, wall, job in rows:
        overhead = wall - job if job is not None else None
        if overhead is not None:
            overheads.append(overhead)
        shown = (f"{job:.0f}" if job is not None else "—", f"{overhead:.2f}" if overhead else "—")
        print(f"| {name} | {wall:.2f} | {shown[0]} | {shown[1]} |")
    if overheads:
        median = statistics.median(overheads)
        verdict = "MET" if max(overheads) <= 2.0 else "NOT MET"
        print(f"\nGoal: orchestration overhead <= 2 s per execution: **{verdict}** "
              f"(median {median:.2f} s, worst {max(overheads):.2f} s; poll interval {poll} s; "
              "job times are Slurm's SubmitTime to EndTime, in whole seconds)")  # fmt: skip


if __name__ == "__main__":
    main()
