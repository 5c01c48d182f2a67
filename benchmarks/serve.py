#!/usr/bin/env python3
"""orch serve benchmark: the REST API (``orch serve --listen``) as a real server process on
loopback, every request with a user's bearer token, on kept-alive connections (one per request
in flight, the standard library's http.client in threads).

Setup (timed, on stderr): in a temporary folder, N deployments (``--executions``, 50) of one
tiny local blueprint whose workflow ``work`` runs ``sleep 0.2; echo done`` on this machine
(``orch deploy``, a few at a time), each published as its own workflow ``w-0``..``w-N-1`` (one
deployment runs one execution at a time: a second trigger on a busy one is a 409), a user and
its token (``orch users add``, ``orch tokens create``), then ``orch serve`` on a free port.

Measured, each a row of a markdown table on stdout:

- trigger: N concurrent ``POST /workflows/w-i`` (one per workflow, all at once): latency of each
  to its 201. Then how many executions ended in SUCCESS and the wall time from the first
  trigger until all ended (seen by polling their status every 0.1 s).
- status: ``--status-requests`` (1,000) ``GET /executions/ID`` over the ended executions of the
  trigger row, one at a time (the baseline), then ``--concurrency`` (10) in flight.
- list: as many ``GET /workflows`` (N workflows listed), same concurrency.
- logs: as many ``GET /executions/ID/logs?timeout=0s``, same concurrency.

Per row: p50, p99 and max latency, requests/s, errors (a status other than the expected one,
or no answer), the server's CPU time (user + system) per request and its resident memory
(VmRSS of the ``orch serve`` process) after the row. Before the rows: the server's RSS when
idle; after the trigger row: the peak, while the executions ran, of the summed RSS of their
processes (each an ``orch run`` under ``sh``, in its own session, not counted in the server's
RSS).

Goals (the issue): no errors; p99 of status requests (``--concurrency`` at a time) under
50 ms; the server's RSS under 150 MB. They are printed under the table with what was
measured. The client runs on the same machine as the server (and, during the trigger row, as
the executions): the latencies include the client's own share of the CPUs, and whatever else
the machine runs: its load average is printed above the table, and under it, per row, the CPU
time used by the server, by this client and by every other process.

Usage: benchmarks/serve.py [--executions 50] [--status-requests 1000] [--concurrency 10]
       [--deploy-workers 4] [--pause 0.2]
Runs the orch of the checkout it is in (its src/ first on PYTHONPATH), as whole processes.
Needs the serve extra (fastapi, uvicorn). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ORCH = [sys.executable, "-m", "orch"]
ENDED = {"SUCCESS", "FAILED", "CANCELLED"}
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 150.0

BLUEPRINT = """\
tosca_definitions_version: tosca_simple_yaml_1_3
interface_types:
  bench.Work:
    derived_from: tosca.interfaces.Root
    operations:
      work: {}
node_types:
  bench.Job:
    derived_from: tosca.nodes.SoftwareComponent
    interfaces:
      Custom: {type: bench.Work}
topology_template:
  inputs:
    pause: {type: float, default: 0.2}
  node_templates:
    job:
      type: bench.Job
      interfaces:
        Custom:
          operations:
            work:
              implementation: scripts/work.sh
              inputs:
                PAUSE: {get_input: pause}
  workflows:
    work:
      inputs:
        pause: {type: float, default: 0.2}
      steps:
        go:
          target: job
          activities:
            - call_operation: Custom.work
"""
WORK = '#!/bin/sh\nsleep "$PAUSE"\necho done\n'


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- processes ------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """VmRSS of the process in kB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _parents() -> dict[int, int]:
    """Every process's parent pid."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    return parents


def descendants(pid: int) -> tuple[list[int], list[int]]:
    """The process's descendants, and its children alone."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found, children.get(pid, [])


class ChildrenPeak:
    """Samples, in a thread, the summed RSS of the server's descendants (the executions), and
    keeps the peak and the most processes seen at once; the server's children (each
    execution's ``sh``, a session leader) go to ``sessions``, to be waited for at the end."""

    def __init__(self, pid: int, sessions: set[int], interval: float = 0.05):
        self.pid = pid
        self.sessions = sessions
        self.interval = interval
        self.peak_kb = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, children = descendants(self.pid)
            self.sessions.update(children)
            self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in pids))
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> ChildrenPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time used so far by the whole machine, all CPUs (from /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    """CPU time (s) used during a row: by the server, by this client and by everything else."""

    server: float = 0.0
    client: float = 0.0
    machine: float = 0.0

    @classmethod
    def now(cls, pid: int) -> Cpu:
        return cls(cpu_seconds(pid), time.process_time(), busy_seconds())

    def since(self, before: Cpu) -> Cpu:
        return Cpu(self.server - before.server, self.client - before.client,
                   self.machine - before.machine)  # fmt: skip

    def note(self, scenario: str, wall: float, others: str = "everything else") -> str:
        rest = max(self.machine - self.server - self.client, 0.0)
        return (
            f"CPU during {scenario} ({wall:.2f} s, {os.cpu_count()} CPU(s)): server "
            f"{self.server:.2f} s, this client {self.client:.2f} s, {others} {rest:.2f} s"
        )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


class Orch:
    """orch's CLI and server on one temporary state folder."""

    def __init__(self, root: Path):
        self.root = root
        src = str(REPO / "src")
        path = os.environ.get("PYTHONPATH")
        self.env = {
            **os.environ,
            "ORCH_STATE_DIR": str(root / "state"),
            "ORCH_DATA_HOME": str(root / "data"),
            "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src,
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.sessions: set[int] = set()
        """The executions' session leaders seen so far (children of the server)."""

    def run(self, *args: str) -> str:
        done = subprocess.run([*ORCH, *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"orch {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def start(self, token: str) -> None:
        self.port = port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.root / "serve.log", "wb")  # noqa: SIM115 (the server's, until it ends)
        self.server = subprocess.Popen(
            [*ORCH, "serve", "--listen", f"127.0.0.1:{port}"],
            env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        client = Client(port, token)
        while time.monotonic() < deadline:
            try:
                if client.request("GET", "/workflows").status == 200:
                    client.close()
                    return
            except (OSError, http.client.HTTPException):
                pass
            if self.server.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"orch serve did not start:\n{self.server_log()}")

    def server_log(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")

    def note_sessions(self) -> None:
        """Remember the server's children (each execution's ``sh``, a session leader)."""
        if self.server is not None and self.server.poll() is None:
            self.sessions.update(descendants(self.server.pid)[1])

    def stop(self, wait: float = 60) -> None:
        """Stop the server, then wait for the executions it started (they are in sessions of
        their own and outlive it) to end, and stop those still running after ``wait``."""
        self.note_sessions()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in self.sessions) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in self.sessions if _alive(p)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        if left:
            say(f"stopped {len(left)} execution(s) still running after {wait:.0f} s")
            time.sleep(1)


def setup(orch: Orch, count: int, workers: int) -> str:
    """N deployments published as w-0..w-N-1, a user; its token."""
    folder = orch.root / "w"
    (folder / "scripts").mkdir(parents=True)
    (folder / "blueprint.yaml").write_text(BLUEPRINT)
    (folder / "scripts" / "work.sh").write_text(WORK)
    (folder / "scripts" / "work.sh").chmod(0o755)
    started = time.perf_counter()
    orch.run("deploy", "w/blueprint.yaml", "-n", "d-0")  # creates the state: not concurrently
    orch.run("publish", "d-0", "work", "--name", "w-0")

    def one(i: int) -> None:
        orch.run("deploy", "w/blueprint.yaml", "-n", f"d-{i}")
        orch.run("publish", f"d-{i}", "work", "--name", f"w-{i}")

    pool = ThreadPoolExecutor(workers)
    try:
        list(pool.map(one, range(1, count)))
    finally:  # on Ctrl-C, no more deploys than those running
        pool.shutdown(cancel_futures=True)
    orch.run("users", "add", "bench")
    token = orch.run("tokens", "create", "bench").strip()
    say(f"setup: {count} deployments deployed and published in "
        f"{time.perf_counter() - started:.1f} s ({workers} at a time)")  # fmt: skip
    return token


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    requests: int = 0
    concurrency: int = 0
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    rss_kb: int = 0
    cpu: Cpu = field(default_factory=Cpu)
    """CPU time while the row's requests were answered."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, text: str) -> None:
        with self._lock:
            self.errors += 1
            if len(self.error_examples) < 3:
                self.error_examples.append(text)

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[round(q * 100) - 1]

    def line(self) -> str:
        ms = [self.quantile(0.5) * 1000, self.quantile(0.99) * 1000,
              max(self.latencies, default=float("nan")) * 1000]  # fmt: skip
        rate = self.requests / self.wall if self.wall else float("nan")
        cpu = self.cpu.server / self.requests * 1000 if self.requests else float("nan")
        return (f"| {self.scenario} | {self.requests} | {self.concurrency} | {ms[0]:.1f} ms | "
                f"{ms[1]:.1f} ms | {ms[2]:.1f} ms | {rate:.0f} | {self.errors} | {cpu:.1f} ms | "
                f"{self.rss_kb / 1024:.1f} MB |")  # fmt: skip


@dataclass
class Answer:
    status: int
    location: str | None
    body: bytes


class Client:
    """HTTP/1.1 over one kept-alive loopback connection, with the bearer token: the standard
    library's http.client, whose own CPU time per request is small next to the server's (this
    client shares the machine's CPUs with the server)."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> Client:
        self.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        if self.conn is None:
            self.connect()
        assert self.conn is not None
        headers, data = dict(self.headers), None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            return Answer(response.status, response.getheader("Location"), response.read())
        except (OSError, http.client.HTTPException):
            self.close()  # the next request connects again
            raise


def timed(
    row: Row, client: Client, method: str, path: str, expect: int,
    body: dict[str, Any] | None = None,
) -> Answer | None:  # fmt: skip
    started = time.perf_counter()
    try:
        answer = client.request(method, path, body)
    except (OSError, http.client.HTTPException) as exc:
        row.latencies.append(time.perf_counter() - started)
        row.error(f"{type(exc).__name__}: {exc}")
        return None
    row.latencies.append(time.perf_counter() - started)
    if answer.status != expect:
        row.error(f"{answer.status}: {answer.body[:200].decode(errors='replace')}")
    return answer


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """``work(0)``..``work(count - 1)``, each in a thread of its own, started together."""
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def many(
    row: Row, pid: int, clients: list[Client], count: int, path_of: Callable[[int], str],
    expect: int = 200,
) -> None:  # fmt: skip
    """``count`` GET requests (of ``path_of(i)``), one client (thread) per request in flight."""
    row.requests, row.concurrency = count, len(clients)
    numbers = iter(range(count))
    taking = threading.Lock()
    ready = threading.Barrier(len(clients) + 1)

    def worker(k: int) -> None:
        ready.wait()
        while True:
            with taking:
                i = next(numbers, None)
            if i is None:
                return
            timed(row, clients[k], "GET", path_of(i), expect)

    runner = threading.Thread(target=in_threads, args=(len(clients), worker), daemon=True)
    runner.start()
    cpu = Cpu.now(pid)
    ready.wait()
    started = time.perf_counter()
    runner.join()
    row.wall = time.perf_counter() - started
    row.cpu = Cpu.now(pid).since(cpu)
    row.rss_kb = rss_kb(pid)


def trigger(
    server: subprocess.Popen[bytes], port: int, token: str, count: int, pause: float
) -> tuple[Row, list[str], float, dict[str, int]]:
    """N concurrent triggers, each on a connection of its own opened beforehand; the row, the
    executions' locations, the wall time until all had ended and how many ended in each
    status."""
    row = Row("trigger: POST /workflows/w-i", requests=count, concurrency=count)
    clients = [Client(port, token).connect() for _ in range(count)]
    answers: list[Answer | None] = [None] * count
    ready = threading.Barrier(count + 1)

    def one(i: int) -> None:
        ready.wait()
        answers[i] = timed(row, clients[i], "POST", f"/workflows/w-{i}", 201,
                           {"inputs": {"pause": pause}})  # fmt: skip

    runner = threading.Thread(target=in_threads, args=(count, one), daemon=True)
    runner.start()
    cpu = Cpu.now(server.pid)
    ready.wait()
    started = time.perf_counter()
    runner.join()
    row.wall = time.perf_counter() - started
    row.cpu = Cpu.now(server.pid).since(cpu)
    for client in clients:
        client.close()
    locations = [a.location for a in answers if a is not None and a.status == 201 and a.location]
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 120 + count * pause
    watch = Client(port, token)
    while len(statuses) < len(locations) and time.monotonic() < deadline:
        if server.poll() is not None:
            say(f"orch serve exited ({server.returncode}) before the executions ended")
            break
        for location in locations:
            if location in statuses:
                continue
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
                status = json.loads(watch.request("GET", location).body)["status"]
                if status in ENDED:
                    statuses[location] = status
        time.sleep(0.1)
    all_ended = time.perf_counter() - started
    watch.close()
    counts: dict[str, int] = {}
    for location in locations:
        status = statuses.get(location, "not ended")
        counts[status] = counts.get(status, 0) + 1
    return row, locations, all_ended, counts


def scenarios(orch: Orch, token: str, args: argparse.Namespace) -> list[str]:
    """The rows of the table and what is printed with it."""
    assert orch.server is not None
    pid, port = orch.server.pid, orch.port
    notes = []
    idle = rss_kb(pid)
    load = os.getloadavg()
    rows: list[Row] = []
    say(f"trigger: {args.executions} concurrent POST /workflows/w-i")
    with ChildrenPeak(pid, orch.sessions) as peak:
        row, locations, all_ended, ended = trigger(
            orch.server, port, token, args.executions, args.pause
        )
    orch.note_sessions()
    row.rss_kb = rss_kb(pid)
    rows.append(row)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(ended.items()))
    notes.append(
        f"trigger: {len(locations)} of {args.executions} executions started; {summary}; "
        f"all ended {all_ended:.2f} s after the first trigger (each runs "
        f"`sleep {args.pause}`); the executions' processes: at most "
        f"{peak.peak_processes} at once, {peak.peak_kb / 1024:.0f} MB RSS summed at peak"
    )  # fmt: skip
    n, c = args.status_requests, args.concurrency
    clients = [Client(port, token).connect() for _ in range(c)]
    if locations:
        for concurrency in dict.fromkeys((1, c)):  # one at a time first: the baseline
            say(f"status: {n} GET /executions/ID, {concurrency} at a time")
            row = Row("status: GET /executions/ID")
            many(row, pid, clients[:concurrency], n, lambda i: locations[i % len(locations)])
            rows.append(row)

    say(f"list: {n} GET /workflows, {c} at a time")
    row = Row(f"list: GET /workflows ({args.executions} listed)")
    many(row, pid, clients, n, lambda i: "/workflows")
    rows.append(row)

    if locations:
        say(f"logs: {n} GET /executions/ID/logs?timeout=0s, {c} at a time")
        row = Row("logs: GET /executions/ID/logs?timeout=0s")
        many(row, pid, clients, n, lambda i: locations[i % len(locations)] + "/logs?timeout=0s")
        rows.append(row)
    for client in clients:
        client.close()

    table = [
        f"{os.cpu_count()} CPU(s), load average {load[0]:.2f} (1 min), {load[1]:.2f} (5 min) "
        f"before the first request; server RSS idle (before the first request): "
        f"{idle / 1024:.1f} MB",
        "",
        "| scenario | requests | concurrency | p50 | p99 | max | req/s | errors "
        "| server CPU/req | server RSS after |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(r.line() for r in rows),
        "",
        *notes,
    ]
    for r in rows:
        others = "the executions and everything else" if r is rows[0] else "everything else"
        name = f"{r.scenario.partition(':')[0]}, {r.concurrency} at a time"
        table.append(r.cpu.note(name, r.wall, others))
    for r in rows:
        for example in r.error_examples:
            table.append(f"error in {r.scenario}: {example}")
    errors = sum(r.errors for r in rows) + sum(n for s, n in ended.items() if s != "SUCCESS")
    status = [r for r in rows if r.scenario.startswith("status") and r.concurrency == c]
    status_p99 = status[0].quantile(0.99) * 1000 if status else float("nan")
    peak_rss = max([idle, *(r.rss_kb for r in rows)]) / 1024
    table += [
        "",
        "Goals:",
        f"- no errors: {'met' if not errors else 'NOT met'} ({errors} error(s), executions "
        "that did not end in SUCCESS counted)",
        f"- p99 of status requests ({c} at a time) < {GOAL_P99_MS:.0f} ms: "
        f"{'met' if status_p99 < GOAL_P99_MS else 'NOT met'} ({status_p99:.1f} ms)",
        f"- server RSS < {GOAL_RSS_MB:.0f} MB: {'met' if peak_rss < GOAL_RSS_MB else 'NOT met'} "
        f"(at most {peak_rss:.1f} MB after a row)",
    ]  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--executions",
        type=int,
        default=50,
        help="deployments, and concurrent triggers (one per deployment)",
    )
    parser.add_argument(
        "--status-requests",
        type=int,
        default=1000,
        help="requests of the status row (and of the list and logs rows)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="requests in flight in the status, list and logs rows",
    )
    parser.add_argument(
        "--deploy-workers",
        type=int,
        default=4,
        help="orch deploy processes at a time during the setup",
    )
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds each execution's script sleeps")  # fmt: skip
    args = parser.parse_args()
    if args.executions < 1 or args.status_requests < 1 or args.concurrency < 1:
        raise SystemExit("--executions, --status-requests and --concurrency must be >= 1")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"needs the serve extra ({exc.name} is missing): pip install "
                         "'orch[serve]'") from None  # fmt: skip

    # a kill (SIGTERM) stops the server and waits for the executions too, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with tempfile.TemporaryDirectory(prefix="orch-bench-serve-") as tmp:
            orch = Orch(Path(tmp))
            with _stopped(orch):
                token = setup(orch, args.executions, args.deploy_workers)
                orch.start(token)
                say(f"orch serve (pid {orch.server.pid}) on {orch.url}")  # type: ignore[union-attr]
                lines = scenarios(orch, token, args)
    except KeyboardInterrupt:
        say("interrupted: the server stopped, its executions ended")
        sys.exit(130)
    print("\n".join(lines))


@contextlib.contextmanager
def _stopped(orch: Orch) -> Iterator[None]:
    """The server stopped and its executions ended (even on Ctrl-C) before the temporary
    folder goes."""
    try:
        yield
    finally:
        orch.stop()
        if orch.server is not None and orch.server.returncode not in (0, -signal.SIGTERM):
            say(f"orch serve exited with {orch.server.returncode}:\n{orch.server_log()}")


if __name__ == "__main__":
    main()
