#!/usr/bin/env python3
"""orch serve benchmark: the REST API (``orch serve --listen``) as a real server process on
loopback, talked to with httpx, every request with a user's bearer token.

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
  trigger row, ``--concurrency`` (10) in flight.
- list: as many ``GET /workflows`` (N workflows listed), same concurrency.
- logs: as many ``GET /executions/ID/logs?timeout=0s``, same concurrency.

Per row: p50, p99 and max latency, requests/s, errors (a status other than the expected one,
or no answer), the server's CPU time (user + system) per request and its resident memory
(VmRSS of the ``orch serve`` process) after the row. Before the rows: the server's RSS when
idle; after the trigger row: the peak, while the executions ran, of the summed RSS of their
processes (each an ``orch run`` under ``sh``, in its own session, not counted in the server's
RSS).

Goals (the issue): no errors; p99 of status requests under 50 ms; the server's RSS under
150 MB. They are printed under the table with what was measured. The client runs on the same
machine as the server (and, during the trigger row, as the executions): the latencies include
the client's own share of the CPUs, and whatever else the machine runs (its load average is
printed above the table).

Usage: benchmarks/serve.py [--executions 50] [--status-requests 1000] [--concurrency 10]
       [--deploy-workers 4] [--pause 0.2]
Needs the serve extra (fastapi, uvicorn) and httpx. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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
        self.sessions: set[int] = set()
        """The executions' session leaders seen so far (children of the server)."""

    def run(self, *args: str) -> str:
        done = subprocess.run([*ORCH, *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"orch {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def start(self, token: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.root / "serve.log", "wb")  # noqa: SIM115 (the server's, until it ends)
        self.server = subprocess.Popen(
            [*ORCH, "serve", "--listen", f"127.0.0.1:{port}"],
            env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/workflows", headers=headers, timeout=1).is_success:
                    return
            except httpx.TransportError:
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
    cpu: float = 0.0
    """The server's CPU time (s) while the row's requests were answered."""

    def error(self, text: str) -> None:
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
        cpu = self.cpu / self.requests * 1000 if self.requests else float("nan")
        return (f"| {self.scenario} | {self.requests} | {self.concurrency} | {ms[0]:.1f} ms | "
                f"{ms[1]:.1f} ms | {ms[2]:.1f} ms | {rate:.0f} | {self.errors} | {cpu:.1f} ms | "
                f"{self.rss_kb / 1024:.1f} MB |")  # fmt: skip


async def timed(
    row: Row, send: Callable[[], Awaitable[httpx.Response]], expect: int
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await send()
    except httpx.HTTPError as exc:
        row.latencies.append(time.perf_counter() - started)
        row.error(f"{type(exc).__name__}: {exc}")
        return None
    row.latencies.append(time.perf_counter() - started)
    if response.status_code != expect:
        row.error(f"{response.status_code}: {response.text[:200]}")
    return response


async def many(
    row: Row, pid: int, count: int, concurrency: int,
    send: Callable[[int], Awaitable[httpx.Response]], expect: int = 200,
) -> None:  # fmt: skip
    """``count`` requests (``send(i)``), ``concurrency`` in flight."""
    row.requests, row.concurrency = count, concurrency
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await timed(row, lambda i=i: send(i), expect)

    cpu, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    row.wall = time.perf_counter() - started
    row.cpu = cpu_seconds(pid) - cpu
    row.rss_kb = rss_kb(pid)


async def trigger(
    client: httpx.AsyncClient, server: subprocess.Popen[bytes], count: int, pause: float
) -> tuple[Row, list[str], float, dict[str, int]]:
    """N concurrent triggers; the row, the executions' locations, the wall time until all had
    ended and how many ended in each status."""
    row = Row("trigger: POST /workflows/w-i", requests=count, concurrency=count)
    body = {"inputs": {"pause": pause}}
    pid = server.pid
    cpu, started = cpu_seconds(pid), time.perf_counter()
    responses = await asyncio.gather(*(
        timed(row, lambda i=i: client.post(f"/workflows/w-{i}", json=body), 201)
        for i in range(count)
    ))  # fmt: skip
    row.wall = time.perf_counter() - started
    row.cpu = cpu_seconds(pid) - cpu
    locations = [r.headers["Location"] for r in responses
                 if r is not None and r.status_code == 201]  # fmt: skip
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 120 + count * pause
    while len(statuses) < len(locations) and time.monotonic() < deadline:
        if server.poll() is not None:
            say(f"orch serve exited ({server.returncode}) before the executions ended")
            break
        for location in locations:
            if location in statuses:
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                status = (await client.get(location)).json()["status"]
                if status in ENDED:
                    statuses[location] = status
        await asyncio.sleep(0.1)
    all_ended = time.perf_counter() - started
    counts: dict[str, int] = {}
    for location in locations:
        status = statuses.get(location, "not ended")
        counts[status] = counts.get(status, 0) + 1
    return row, locations, all_ended, counts


async def scenarios(orch: Orch, token: str, args: argparse.Namespace) -> list[str]:
    """The rows of the table; what is printed under it."""
    assert orch.server is not None
    pid = orch.server.pid
    notes = []
    idle = rss_kb(pid)
    load = os.getloadavg()[0]
    limits = httpx.Limits(
        max_connections=max(args.executions, args.concurrency),
        max_keepalive_connections=max(args.executions, args.concurrency),
    )
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[Row] = []
    async with httpx.AsyncClient(base_url=orch.url, headers=headers, limits=limits,
                                 timeout=60) as client:  # fmt: skip
        say(f"trigger: {args.executions} concurrent POST /workflows/w-i")
        with ChildrenPeak(pid, orch.sessions) as peak:
            row, locations, all_ended, ended = await trigger(
                client, orch.server, args.executions, args.pause
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
        if locations:
            say(f"status: {n} GET /executions/ID, {c} at a time")
            row = Row("status: GET /executions/ID")
            await many(row, pid, n, c, lambda i: client.get(locations[i % len(locations)]))
            rows.append(row)

        say(f"list: {n} GET /workflows, {c} at a time")
        row = Row(f"list: GET /workflows ({args.executions} listed)")
        await many(row, pid, n, c, lambda i: client.get("/workflows"))
        rows.append(row)

        if locations:
            say(f"logs: {n} GET /executions/ID/logs?timeout=0s, {c} at a time")
            row = Row("logs: GET /executions/ID/logs?timeout=0s")
            await many(row, pid, n, c, lambda i: client.get(
                locations[i % len(locations)] + "/logs", params={"timeout": "0s"}))  # fmt: skip
            rows.append(row)

    table = [
        f"{os.cpu_count()} CPU(s), load average (1 min) {load:.2f} before the first request and "
        f"{os.getloadavg()[0]:.2f} after the last; server RSS idle (before the first request): "
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
        for example in r.error_examples:
            table.append(f"error in {r.scenario}: {example}")
    errors = sum(r.errors for r in rows) + sum(n for s, n in ended.items() if s != "SUCCESS")
    status = [r for r in rows if r.scenario.startswith("status")]
    status_p99 = status[0].quantile(0.99) * 1000 if status else float("nan")
    peak_rss = max([idle, *(r.rss_kb for r in rows)]) / 1024
    table += [
        "",
        "Goals:",
        f"- no errors: {'met' if not errors else 'NOT met'} ({errors} error(s), executions "
        "that did not end in SUCCESS counted)",
        f"- p99 of status requests < {GOAL_P99_MS:.0f} ms: "
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
                lines = asyncio.run(scenarios(orch, token, args))
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
