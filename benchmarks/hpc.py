#!/usr/bin/env python3
"""HPC benchmark: orch's batch executor on loopback Slurm and Son of Grid Engine clusters, orch
run in-process, the same blueprints on both.

Each Slurm cluster is a real munged + slurmctld + slurmd on 127.0.0.1, the SGE cluster a real
sge_qmaster + sge_execd (Debian's gridengine 8.1.9, one host with as many slots as this machine
has CPUs), and each login node a real sshd whose sessions see its cluster (``tests/sites``);
orch logs in as the unprivileged user. A blueprint holds one ``orch.nodes.Site`` and N
``orch.nodes.SlurmJob`` nodes (one task, one CPU, ``sleep 1`` then the time it ended), all
deployed at once; sites.yaml says which scheduler each site runs. Measured per deploy:

- wall time of ``orch.deployments.deploy`` and jobs/s. The cluster is one node with as many
  CPUs as this machine: jobs beyond that queue in Slurm, so for many jobs the wall time is
  Slurm's throughput; what is measured is how orch watches them.
- SSH connections opened, and every command orch runs over SSH: submits, status commands, the
  rest. Poll rounds are the distinct (site, due time) pairs the engine polls jobs in; the goal
  is one status command per site per round, whatever the number of jobs. Extra status
  commands are split by round: rounds where jobs are polled for the first time (the site's
  monitor learns a job at its first poll) and the others; the busiest round shows how long the
  worst one took.
- notice lag: from a job's end to the step-end event of its ``run`` step. The end is the time
  the job printed as its last line (``date +%s.%N``, after ``sleep 1``), and also Slurm's
  EndTime (SGE: qacct's end_time; whole seconds, so that lag reads up to 1 s
  high). Goal: lag <= one poll interval.
  Beside it: how long status commands take, and how late polls ask after their round's due
  time (a poll waits for a free worker, and for the status command of its round).

Also two-site deploys: two Slurm clusters, then one Slurm and one SGE cluster, N jobs each, in
one blueprint (expect 2 connections and one status command per site per round).

Usage: benchmarks/hpc.py [--jobs 1,20,100] [--poll-interval 1] [--repeat 1] [--workers 4]
       [--many-workers 16] [--two-sites 20] [--schedulers slurm,sge]
Needs root, /usr/sbin/sshd, Slurm (slurmctld, slurmd, munge, the client commands) and
gridengine (master, exec, client).
Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import REPO, _last_line

STATUS_PREFIXES = ("S=$(squeue", "X=$(qstat")
JOB_SCRIPT = "sleep 1\ndate +%s.%N\n"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- sites ----------------------------------------------------------------------------------------


@dataclass
class Site:
    """One loopback cluster and its login node."""

    name: str
    cluster: Any
    ssh: Any
    scheduler: str = "slurm"


def start_site(stack: contextlib.ExitStack, name: str) -> Site:
    """A cluster (SGE when the name starts with 'sge', else Slurm) and an sshd whose sessions
    carry its variables and PATH, both stopped (and their folders removed) when ``stack``
    closes."""
    from sites.slurm import SlurmCluster
    from sites.sshd import SshServer, free_port

    if name.startswith("sge"):
        return start_sge_site(stack, name)
    # not 0700 folders: the cluster's users read slurm.conf and the munge socket, sshd reads the
    # authorized keys as the user
    cluster_root = Path(tempfile.mkdtemp(prefix=f"orch-bench-slurm-{name}-"))
    stack.callback(shutil.rmtree, cluster_root, ignore_errors=True)
    cluster = SlurmCluster(cluster_root, name)
    say(f"starting Slurm cluster {name} ...")
    cluster.start()
    stack.callback(cluster.stop)
    ssh_root = Path(tempfile.mkdtemp(prefix=f"orch-bench-sshd-{name}-"))
    stack.callback(shutil.rmtree, ssh_root, ignore_errors=True)
    server = SshServer(ssh_root, free_port(), set_env=cluster.env)
    server.start()
    stack.callback(server.stop)
    say(
        f"  {name}: slurmctld port {cluster.ctld_port}, {cluster.cpus} CPU(s), login node "
        f"127.0.0.1:{server.port} (started in {cluster.startup_seconds:.1f} s)"
    )
    return Site(name, cluster, server)


def start_sge_site(stack: contextlib.ExitStack, name: str) -> Site:
    from sites.sge import SgeCluster
    from sites.sshd import SshServer, free_port

    root = Path(tempfile.mkdtemp(prefix=f"orch-bench-sge-{name}-"))
    root.chmod(0o755)  # every user that submits reads SGE_ROOT
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    cluster = SgeCluster(root, name, slots=os.cpu_count() or 1)
    say(f"starting SGE cluster {name} ...")
    cluster.start()
    stack.callback(cluster.stop)
    cluster.cpus = os.cpu_count() or 1
    ssh_root = Path(tempfile.mkdtemp(prefix=f"orch-bench-sshd-{name}-"))
    stack.callback(shutil.rmtree, ssh_root, ignore_errors=True)
    server = SshServer(ssh_root, free_port(), set_env=cluster.env)
    server.start()
    stack.callback(server.stop)
    say(f"  {name}: qmaster port {cluster.qmaster_port}, {cluster.cpus} slot(s), login node "
        f"127.0.0.1:{server.port} (started in {cluster.startup_seconds:.1f} s)")
    return Site(name, cluster, server, "sge")


def sites_yaml(sites: list[Site], work: Path) -> str:
    import yaml

    entries = {
        site.name: {
            "host": "127.0.0.1",
            "port": site.ssh.port,
            "user": site.ssh.unprivileged_user,
            "identity_file": str(site.ssh.client_key),
            "known_hosts": str(site.ssh.known_hosts),
            "scheduler": site.scheduler,
            **({"partition": "debug"} if site.scheduler == "slurm" else {}),
            "work_dir": str(work / site.name),
        }
        for site in sites
    }
    return yaml.safe_dump({"sites": entries}, sort_keys=False)


def blueprint(jobs: dict[str, int]) -> tuple[str, dict[str, str]]:
    """The blueprint text for ``jobs`` (site -> count), and each job node's site."""
    import yaml

    nodes: dict[str, Any] = {}
    site_of_node: dict[str, str] = {}
    for site, count in jobs.items():
        login = f"login_{site}"
        nodes[login] = {"type": "orch.nodes.Site", "properties": {"site": site}}
        for index in range(count):
            name = f"{site}_j{index:03d}"
            nodes[name] = {
                "type": "orch.nodes.SlurmJob",
                "properties": {"script": JOB_SCRIPT, "tasks": 1, "cpus_per_task": 1},
                "requirements": [{"host": login}],
            }
            site_of_node[name] = site
    data = {
        "tosca_definitions_version": "tosca_simple_yaml_1_3",
        "imports": ["orch-hpc:1.0.0"],
        "topology_template": {"node_templates": nodes},
    }
    return yaml.safe_dump(data, sort_keys=False), site_of_node


# -- what orch does over SSH -----------------------------------------------------------------------


@dataclass
class Query:
    """One status command: its site, the due time of the round it served, when it started and
    how long it took (monotonic seconds), how many jobs it asked about, when it started by the
    wall clock, and the jobs Slurm reported as not ended yet."""

    site: str
    due: float | None
    started: float
    seconds: float
    jobs: int
    clock: float
    unfinished: frozenset[str]


class Recorder:
    """Counts, while installed, every command run over SSH (by site and kind), every SFTP call,
    every poll of a job (a watch asking its site's monitor) and every status command, each with
    the poll round (site, due time) it served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round = threading.local()
        self.site_names: dict[int, str] = {}
        """Login node port -> site name."""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.commands: Counter[tuple[str, str]] = Counter()
            self.sftp = 0
            self.polls: Counter[tuple[str, float | None]] = Counter()
            self.status: Counter[tuple[str, float | None]] = Counter()
            self.queries: list[Query] = []
            self.poll_delays: list[float] = []
            self.first_polls: dict[tuple[str, str], float | None] = {}

    def install(self) -> None:
        from orch.executors import job_monitor
        from orch.transport.ssh import SshTransport

        run, sftp = SshTransport.run, SshTransport._sftp
        status, query = job_monitor.SiteMonitor.status, job_monitor.query
        recorder = self

        def counted_run(self: Any, command: str, **kwargs: Any) -> Any:
            with recorder._lock:
                recorder.commands[(recorder.site(self), command_kind(command))] += 1
            return run(self, command, **kwargs)

        def counted_sftp(self: Any, *args: Any) -> Any:
            with recorder._lock:
                recorder.sftp += 1
            return sftp(self, *args)

        def counted_status(
            self: Any, job_id: str, files: Any, transport: Any, *, due: float | None,
            cancel: Any, env: Any = None,
        ) -> Any:
            key = (recorder.site(transport), due)
            with recorder._lock:
                recorder.polls[key] += 1
                if due is not None:
                    recorder.poll_delays.append(time.monotonic() - due)
                recorder.first_polls.setdefault((key[0], job_id), due)
            recorder._round.key = key
            try:
                return status(self, job_id, files, transport, due=due, cancel=cancel, env=env)
            finally:
                recorder._round.key = None

        def counted_query(scheduler: Any, transport: Any, jobs: Any, cancel: Any,
                          env: Any = None) -> Any:  # fmt: skip
            key = getattr(recorder._round, "key", None) or (recorder.site(transport), None)
            with recorder._lock:
                recorder.status[key] += 1
            clock, started = time.time(), time.monotonic()
            answers = query(scheduler, transport, jobs, cancel, env)
            took = time.monotonic() - started
            unfinished = frozenset(j for j, info in answers.items() if not info.ended)
            with recorder._lock:
                recorder.queries.append(
                    Query(key[0], key[1], started, took, len(jobs), clock, unfinished)
                )
            return answers

        SshTransport.run = counted_run  # type: ignore[method-assign]
        SshTransport._sftp = counted_sftp  # type: ignore[method-assign]
        job_monitor.SiteMonitor.status = counted_status  # type: ignore[method-assign]
        job_monitor.query = counted_query

    def site(self, transport: Any) -> str:
        """The site a transport logs in to."""
        target = getattr(transport, "target", None)
        if target is None:
            return "local"
        return self.site_names.get(target.port, target.name)


def command_kind(command: str) -> str:
    if command.startswith(STATUS_PREFIXES) or any(f"\n{p}" in command for p in STATUS_PREFIXES):
        return "status"
    if "sbatch" in command or "qsub" in command:
        return "submit"
    words = command.split()
    return words[0] if words else "?"


# -- one deploy ------------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    connections: int
    commands: Counter
    sftp: int
    polls: Counter
    status: Counter
    lags: list[float] = field(default_factory=list)
    """Step-end of the run step minus the end the job printed (s)."""
    end_lags: list[float] = field(default_factory=list)
    """The same minus Slurm's EndTime (whole seconds)."""
    status_polls: int = 0
    """Status commands the orch executor itself counted (SlurmExecutor.status_rounds)."""
    queries: list[Query] = field(default_factory=list)
    poll_delays: list[float] = field(default_factory=list)
    """How late each poll asked its site's monitor, after its round's due time (s)."""
    first_rounds: set = field(default_factory=set)
    """The rounds (site, due) in which some job was polled for the first time."""
    slurm_late: list[float] = field(default_factory=list)
    """Per job that a status command started after its printed end still found not ended: the
    longest such time after its end (s), i.e. how late Slurm was at least."""


class Listener:
    """Records when orch noticed each job's end: the step-end event of its run step, and the
    end time the job printed (the last line of its output, which the same poll brings)."""

    def __init__(self) -> None:
        self.run_steps: set[str] = set()
        self.stamps: dict[str, float] = {}
        self.noticed: dict[str, float] = {}
        self.problems: list[str] = []

    def __call__(self, event: Any) -> None:
        if event.kind == "step-start" and event.data.get("operation") == "run":
            self.run_steps.add(event.step)
        elif event.kind == "output" and event.step in self.run_steps:
            with contextlib.suppress(ValueError):
                self.stamps[event.instance] = float(event.message.strip())
        elif event.kind == "step-end" and event.step in self.run_steps:
            self.noticed[event.instance] = event.time
            if event.data.get("status") != "ok":
                self.problems.append(f"{event.instance}: {event.message}")


def deploy_once(
    sites: dict[str, Site],
    jobs: dict[str, int],
    name: str,
    workers: int,
    poll: float,
    recorder: Recorder,
    scratch: Path,
) -> Run:
    from orch import deployments
    from orch.engine.runner import EngineOptions
    from orch.executors.slurm import SlurmExecutor
    from orch.state import Store
    from orch.transport.base import HostKeyPolicy

    text, site_of_node = blueprint(jobs)
    path = scratch / f"{name}.yaml"
    path.write_text(text)
    prepared = deployments.prepare(str(path), [])
    known = [str(sites[s].ssh.known_hosts) for s in jobs]
    options = EngineOptions(
        workers=workers, poll_interval=poll, host_keys=HostKeyPolicy(known_hosts_files=known)
    )
    executor = SlurmExecutor()
    listener = Listener()
    store = Store.open(scratch / f"state-{name}")
    try:
        recorder.reset()
        started = time.perf_counter()
        outcome = deployments.deploy(store, prepared, name, options, listener, [executor])
        wall = time.perf_counter() - started
        summary = outcome.summary
        if summary.status != "ok" or listener.problems:
            why = [f"{f.title}: {f.message}" for f in summary.failures] + listener.problems
            raise SystemExit(f"deploy {name}: {summary.status}\n" + "\n".join(why[:10]))
        job_ids = {row.instance: (row.node, row.job_id) for row in store.jobs(name)}
    finally:
        store.close()
    run = Run(
        wall,
        summary.connections,
        Counter(recorder.commands),
        recorder.sftp,
        Counter(recorder.polls),
        Counter(recorder.status),
        status_polls=executor.status_rounds(),
        queries=list(recorder.queries),
        poll_delays=list(recorder.poll_delays),
        first_rounds={(site, due) for (site, _), due in recorder.first_polls.items()},
    )
    ends = slurm_end_times(sites, site_of_node, job_ids)
    for instance, noticed in listener.noticed.items():
        if instance in listener.stamps:
            stamp = listener.stamps[instance]
            run.lags.append(noticed - stamp)
            node, job_id = job_ids[instance]
            stale = [
                q.clock - stamp
                for q in run.queries
                if q.site == site_of_node[node] and q.clock > stamp and job_id in q.unfinished
            ]
            if stale:
                run.slurm_late.append(max(stale))
        if instance in ends:
            run.end_lags.append(noticed - ends[instance])
    if run.status_polls != commands_of(run, "status"):
        say(
            f"  note: the executor counted {run.status_polls} status commands, "
            f"the transport {commands_of(run, 'status')}"
        )
    expected = sum(jobs.values())
    if len(listener.noticed) != expected or len(run.lags) != expected:
        say(
            f"  note: {len(listener.noticed)} run steps ended, {len(run.lags)} with the job's "
            f"printed end, {len(run.end_lags)} with Slurm's EndTime, of {expected} jobs"
        )
    return run


def slurm_end_times(
    sites: dict[str, Site], site_of_node: dict[str, str], job_ids: dict[str, tuple[str, str]]
) -> dict[str, float]:
    """Slurm's EndTime of each instance's job (epoch seconds; Slurm prints local time)."""
    by_site: dict[str, dict[str, str]] = {}
    for instance, (node, job_id) in job_ids.items():
        by_site.setdefault(site_of_node[node], {})[job_id] = instance
    ends: dict[str, float] = {}
    for site, instances in by_site.items():
        if sites[site].scheduler == "sge":
            ends.update(sge_end_times(sites[site], instances))
            continue
        result = sites[site].cluster.run(
            "squeue", "-h", "-t", "all", "-j", ",".join(instances), "-o", "%i|%T|%e", check=False
        )
        if result.returncode != 0:
            say(f"  squeue on {site} failed: {_last_line(result.stderr)}")
            continue
        for line in result.stdout.splitlines():
            job_id, state, end = [*line.split("|"), "", ""][:3]
            if job_id in instances and state == "COMPLETED":
                with contextlib.suppress(ValueError):
                    ends[instances[job_id]] = time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S"))
    return ends


def sge_end_times(site: Site, instances: dict[str, str]) -> dict[str, float]:
    """qacct's end_time of each job (local time, whole seconds), from one qacct call; SGE
    writes its accounting a moment after a job ends."""
    ends: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        result = site.cluster.run("qacct", "-j", check=False, timeout=60)
        job = None
        for line in result.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "jobnumber":
                job = value.strip()
            elif key == "end_time" and job in instances:
                with contextlib.suppress(ValueError):
                    ends[instances[job]] = time.mktime(
                        time.strptime(value.strip(), "%a %b %d %H:%M:%S %Y"))
        if len(ends) == len(instances):
            break
        time.sleep(0.5)
    return ends


# -- scenarios and tables --------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    jobs: dict[str, int]
    workers: int
    runs: list[Run] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    def median(self, value) -> float:
        return statistics.median(value(run) for run in self.runs)


def commands_of(run: Run, kind: str | None = None) -> int:
    return sum(n for (_, k), n in run.commands.items() if kind is None or k == kind)


def per_round(run: Run) -> tuple[float, int, int]:
    """(status commands per round per site on average, the most in one round, rounds)."""
    rounds = set(run.polls) | set(run.status)
    if not rounds:
        return 0.0, 0, 0
    counts = [run.status.get(key, 0) for key in rounds]
    return sum(counts) / len(rounds), max(counts), len(rounds)


def extra_status(run: Run) -> tuple[int, int]:
    """Status commands beyond one per round: in rounds where some job had its first poll, and in
    the other rounds."""
    first = other = 0
    for key, count in run.status.items():
        if key in run.first_rounds:
            first += count - 1
        else:
            other += count - 1
    return first, other


def busiest_round(run: Run) -> tuple[int, float]:
    """The round with the most status commands: how many, and the seconds from the start of its
    first to the end of its last."""
    rounds: dict[tuple[str, float | None], list[Query]] = {}
    for query in run.queries:
        rounds.setdefault((query.site, query.due), []).append(query)
    if not rounds:
        return 0, 0.0
    queries = max(rounds.values(), key=len)
    span = max(q.started + q.seconds for q in queries) - min(q.started for q in queries)
    return len(queries), span


def print_tables(rows: list[Row], poll: float, cpus: int) -> None:
    print(
        "Slurm and SGE jobs through orch (each one 1-CPU task: sleep 1), poll interval "
        f"{poll:g} s; "
        f"medians of {len(rows[0].runs)} run(s)\n"
    )
    print(
        "| scenario | jobs | workers | wall | jobs/s | SSH connections | commands | submit "
        "| status | other | poll rounds | status commands per round per site: mean (max) "
        "| extra status commands: in first-poll rounds / other rounds | busiest round |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        wall = row.median(lambda r: r.wall)
        total = row.median(commands_of)
        status = row.median(lambda r: commands_of(r, "status"))
        submit = row.median(lambda r: commands_of(r, "submit"))
        mean = statistics.mean(per_round(r)[0] for r in row.runs)
        most = max(per_round(r)[1] for r in row.runs)
        cells = [
            row.label, row.total, row.workers, f"{wall:.2f} s", f"{row.total / wall:.1f}",
            f"{row.median(lambda r: r.connections):g}", f"{total:g}", f"{submit:g}",
            f"{status:g}", f"{total - status - submit:g}",
            f"{row.median(lambda r: per_round(r)[2]):g}", f"{mean:.2f} ({most})",
            f"{row.median(lambda r: extra_status(r)[0]):g} / "
            f"{row.median(lambda r: extra_status(r)[1]):g}", _busiest(row),
        ]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    kinds: Counter[str] = Counter()
    for row in rows:
        for run in row.runs:
            for (_, kind), n in run.commands.items():
                kinds[kind] += n
    others = (
        ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()) if k not in ("status", "submit"))
        or "none"
    )
    sftp = sum(run.sftp for row in rows for run in row.runs)
    print(
        f"\nThe cluster is one node with {cpus} CPU(s): at most {cpus} jobs run at once and the "
        "others queue, so wall time and jobs/s for many jobs are Slurm's throughput here, not "
        "orch's; the columns after them are what orch does to watch the jobs. Wall time is "
        "orch.deployments.deploy (validation excluded). A poll round is one (site, due time) "
        "the engine polled jobs at; a first-poll round is one in which some job was polled for "
        "the first time; the busiest round is the one with the most status commands (the worst "
        "run's), from the start of its first to the end of its last. Other commands over all "
        "runs: "
        f"{others}; SFTP requests: {sftp}.\n"
    )
    print(
        "| scenario | jobs | workers | poll interval | notice lag: median | max "
        "| from the scheduler's end time: median | max | status command: median | max "
        "| polls asking after their due time: median | max "
        "| jobs the scheduler still showed not ended after their end (longest) "
        "| max lag <= interval |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lags = [lag for run in row.runs for lag in run.lags]
        ends = [lag for run in row.runs for lag in run.end_lags]
        took = [q.seconds for run in row.runs for q in run.queries]
        late = [delay for run in row.runs for delay in run.poll_delays]
        verdict = "-" if not lags else ("yes" if max(lags) <= poll else "NO")
        cells = [
            row.label, row.total, row.workers, f"{poll:g} s", _s(lags, "median"), _s(lags, "max"),
            _s(ends, "median"), _s(ends, "max"), _s(took, "median"), _s(took, "max"),
            _s(late, "median"), _s(late, "max"), _stale(row), verdict,
        ]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    print(
        "\nNotice lag: the step-end event of a job's run step minus the time the job printed "
        "as it ended (its last line, date +%s.%N), over all jobs of the runs. Slurm's EndTime "
        "has whole seconds (the end falls in [EndTime, EndTime + 1 s)), so the lag from it "
        "reads up to 1 s high. Polls are aligned on multiples of the interval: a job ending "
        "just after a round is seen one interval later, plus the time its poll waits for a "
        "worker and the status command's time; Slurm's own completion comes on top "
        "(COMPLETING is not yet an end): the column before the last counts the jobs that a status "
        "command started after their printed end still found running or completing, with the "
        "longest such time after the end. Jobs here end in step with each other (each starts "
        "when one ends), so the median depends on where that rhythm falls between rounds."
    )


def _stale(row: Row) -> str:
    late = [t for run in row.runs for t in run.slurm_late]
    jobs = sum(len(run.lags) for run in row.runs)
    return f"{len(late)} of {jobs}" + (f" ({max(late):.2f} s)" if late else "")


def _busiest(row: Row) -> str:
    count, span = max(busiest_round(run) for run in row.runs)
    return f"{count} status commands in {span:.2f} s"


def _s(values: list[float], how: str) -> str:
    if not values:
        return "-"
    value = statistics.median(values) if how == "median" else max(values)
    return f"{value:.2f} s"


# -- images ----------------------------------------------------------------------------------------


IMAGE_BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
    image:
      type: orch.nodes.ContainerImage
      properties:
        image_name: bench
        builder: apptainer
        base: scratch
        files: {/bin/busybox: /bin/busybox, payload.bin: /payload.bin}
      requirements: [{host: login}]
"""


def image_rows(site: Site, recorder: Recorder, scratch: Path) -> None:
    """A deploy of an image blueprint (Apptainer, busybox and 16 MiB of data, placed on the
    site), then a second deploy of the same blueprint (a new deployment, same orch cache): it
    should build nothing and send nothing; then one with --force-rebuild."""
    from orch import deployments
    from orch.engine.runner import EngineOptions
    from orch.state import Store
    from orch.transport.base import HostKeyPolicy
    from sites.apptainer import find_apptainer

    folder = find_apptainer()
    if folder is None:
        say("image scenario SKIPPED: no apptainer (tests/run.sh installs it in /opt/orch-sites)")
        return
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ['PATH']}"
    os.environ["ORCH_CACHE_HOME"] = str(scratch / "cache")
    (scratch / "payload.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    path = scratch / "image.yaml"
    path.write_text(IMAGE_BLUEPRINT)
    policy = HostKeyPolicy(known_hosts_files=[str(site.ssh.known_hosts)])
    print("\nImage blueprint deployed three times (new deployment each time, one orch cache)\n")
    print("| deploy | wall | built | transferred | SSH commands | SFTP requests |")
    print("|---|---|---|---|---|---|")
    for index, (label, force) in enumerate(
        [("first", False), ("second, unchanged", False), ("third, --force-rebuild", True)]
    ):
        prepared = deployments.prepare(str(path), [])
        options = EngineOptions(host_keys=policy, force_rebuild=force)
        store = Store.open(scratch / f"state-image{index}")
        try:
            recorder.reset()
            started = time.perf_counter()
            outcome = deployments.deploy(store, prepared, f"image{index}", options)
            wall = time.perf_counter() - started
            if outcome.summary.status != "ok":
                why = [f"{f.title}: {f.message}" for f in outcome.summary.failures]
                raise SystemExit("image deploy failed: " + "; ".join(why))
            [row] = [r for r in store.instances(f"image{index}") if r.node == "image"]
            attributes = dict(row.attributes)
        finally:
            store.close()
        commands = sum(Counter(recorder.commands).values())
        print(f"| {label} | {wall:.2f} s | {attributes.get('built')} | "
              f"{attributes.get('transferred')} | {commands} | {recorder.sftp} |")


HELD_BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
    held:
      type: orch.nodes.SlurmAllocation
      properties: {tasks: 1, time: 30 m}
      requirements: [{host: login}]
    app:
      type: orch.nodes.SlurmJob
      properties: {command: date +%s.%N, poll_interval: POLL}
      requirements: [{host: HOST}]
"""


class StartListener:
    """The time each run's application printed first (``date +%s.%N``, its first line)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, event: Any) -> None:
        if event.kind == "output":
            with contextlib.suppress(ValueError):
                self.stamps.append(float(event.message.strip()))


def held_rows(site: Site, scratch: Path, runs: int, poll: float) -> None:
    """``orch run run`` of one job, ``runs`` times: a fresh batch job each time (sbatch, then
    Slurm's scheduler starts it), against a step of an allocation held since deploy (srun
    --jobid). Measured: from the run's start to the application's first line (its start
    time), and the run's wall time."""
    from orch import deployments
    from orch.engine.runner import EngineOptions
    from orch.state import Store
    from orch.transport.base import HostKeyPolicy

    policy = HostKeyPolicy(known_hosts_files=[str(site.ssh.known_hosts)])
    print(f"\nHeld allocation against fresh submission: orch run run of one job, {runs} runs "
          f"each, poll interval {poll} s\n")
    print("| job | run -> application started: median | min | max | run wall: median |")
    print("|---|---|---|---|---|")
    for label, host in (("fresh batch job (sbatch)", "login"),
                        ("step of a held allocation (srun --jobid)", "held")):
        path = scratch / f"held-{host}.yaml"
        text = HELD_BLUEPRINT.replace("HOST", host).replace("POLL", f"{poll} s")
        if host == "login":  # no allocation to hold
            text = text.replace(text[text.index("    held:"):text.index("    app:")], "")
        path.write_text(text)
        options = EngineOptions(host_keys=policy, poll_interval=poll)
        store = Store.open(scratch / f"state-held-{host}")
        name = f"held-{host}"
        starts, walls = [], []
        try:
            outcome = deployments.deploy(store, deployments.prepare(str(path), []), name, options)
            if outcome.summary.status != "ok":
                raise SystemExit(f"deploy {name}: {outcome.summary.status}")
            for _ in range(runs):
                listener = StartListener()
                began = time.time()
                outcome = deployments.run_workflow(store, name, "run", options, listener)
                walls.append(time.time() - began)
                if outcome.summary.status != "ok" or not listener.stamps:
                    raise SystemExit(f"run of {name}: {outcome.summary.status}")
                starts.append(listener.stamps[0] - began)
            deployments.undeploy(store, name, options)
        finally:
            store.close()
        print(f"| {label} | {statistics.median(starts):.2f} s | {min(starts):.2f} s | "
              f"{max(starts):.2f} s | {statistics.median(walls):.2f} s |")


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,20,100", help="job counts on one site")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--many-workers",
        type=int,
        default=16,
        help="also run job counts >= 100 with this many workers (0: no)",
    )
    parser.add_argument(
        "--two-sites",
        type=int,
        default=20,
        help="jobs per site in the two-site deploy (0: no two-site deploy)",
    )
    parser.add_argument("--schedulers", default="slurm,sge",
                        help="the one-site rows on these schedulers (slurm, sge)")
    parser.add_argument("--no-image", dest="image", action="store_false",
                        help="skip the unchanged-image scenario")
    parser.add_argument("--held-runs", type=int, default=10,
                        help="runs of the held-allocation scenario (0: no)")
    args = parser.parse_args()
    counts = [int(n) for n in args.jobs.split(",") if n.strip()]
    if os.geteuid() != 0:
        raise SystemExit("hpc.py needs root: it starts slurmd, munged and sshd")
    sys.path.insert(0, str(REPO / "tests"))
    from sites.sge import missing_binaries as missing_sge
    from sites.slurm import missing_binaries
    from sites.sshd import SSHD

    schedulers = [s.strip() for s in args.schedulers.split(",") if s.strip()]
    missing = missing_binaries() + ([] if os.path.exists(SSHD) else [SSHD])
    missing += missing_sge() if "sge" in schedulers else []
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)} (apt-get install slurmctld slurmd slurm-client munge "
            "openssh-server gridengine-master gridengine-exec gridengine-client)"
        )

    site_of = {"slurm": "hpc1", "sge": "sge1"}
    rows = []
    for scheduler in schedulers:
        one = site_of[scheduler]
        rows += [Row(f"{scheduler}: one site, {n} jobs", {one: n}, args.workers) for n in counts]
        if args.many_workers and args.many_workers != args.workers:
            rows += [Row(f"{scheduler}: one site, {n} jobs", {one: n}, args.many_workers)
                     for n in counts if n >= 100]  # fmt: skip
    if args.two_sites:
        jobs = {"hpc1": args.two_sites, "hpc2": args.two_sites}
        rows.append(Row(f"slurm + slurm: two sites, {args.two_sites} jobs each", jobs,
                        args.workers))  # fmt: skip
        if "sge" in schedulers:
            jobs = {"hpc1": args.two_sites, "sge1": args.two_sites}
            rows.append(Row(f"slurm + sge: two sites, {args.two_sites} jobs each", jobs,
                            args.workers))  # fmt: skip
    if not rows and not args.image and not args.held_runs:
        raise SystemExit("nothing to run: give --jobs or --two-sites")

    recorder = Recorder()
    recorder.install()
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="orch-bench-hpc-"))
        scratch.chmod(0o755)
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        work = scratch / "work"  # the job folders, written by the site's user
        work.mkdir(mode=0o777)
        work.chmod(0o777)
        names = sorted({site for row in rows for site in row.jobs} | {"hpc1"})
        sites = {name: start_site(stack, name) for name in names}
        recorder.site_names = {site.ssh.port: name for name, site in sites.items()}
        sites_file = scratch / "sites.yaml"
        sites_file.write_text(sites_yaml(list(sites.values()), work))
        os.environ["ORCH_SITES"] = str(sites_file)
        if args.image:
            image_rows(sites["hpc1"], recorder, scratch)
        if args.held_runs:
            held_rows(sites["hpc1"], scratch, args.held_runs, args.poll_interval)
        for index, row in enumerate(rows):
            for attempt in range(args.repeat):
                name = f"bench{index}-{row.total}-w{row.workers}-r{attempt}"
                say(f"{row.label}, {row.workers} workers (run {attempt + 1}/{args.repeat}) ...")
                run = deploy_once(
                    sites, row.jobs, name, row.workers, args.poll_interval, recorder, scratch
                )
                row.runs.append(run)
                _, most, rounds = per_round(run)
                say(
                    f"  {run.wall:.2f} s, {run.connections} connection(s), "
                    f"{commands_of(run)} commands ({commands_of(run, 'status')} status in "
                    f"{rounds} rounds, max {most} per round), median lag "
                    f"{_s(run.lags, 'median')}"
                )
        cpus = sites[names[0]].cluster.cpus
    if rows:
        print_tables(rows, args.poll_interval, cpus)


if __name__ == "__main__":
    main()
