#!/usr/bin/env python3
"""Deploy benchmark: ``orch deploy`` of the shared generator's ``tree_N_sh`` blueprints (a
one-line shell script per node), locally and over SSH to a loopback OpenSSH server.

Prints a markdown table (wall time of the whole ``orch deploy`` process, time per operation), then
orch's own overhead per operation: the slope of wall time against N at 1 worker (so the fixed
start-up cost is apart), minus the cost of running the script itself in a bare loop. Goals
(issue 3): tree_100_sh locally <= 2 s and over SSH <= 4 s with 4 workers; overhead <= 10 ms per
operation.

Usage: benchmarks/deploy.py [--sizes 10,100,500] [--workers 1,4] [--repeat 3] [--no-ssh]
Needs ../shared/bench/gen_deploy.py (or ORCH_SHARED) and, for SSH, /usr/sbin/sshd (run as root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ORCH_SHARED", REPO.parent / "shared"))
ORCH = [sys.executable, "-m", "orch"]


def generate(out: Path, sizes: list[int]) -> None:
    subprocess.run(
        [sys.executable, str(SHARED / "bench" / "gen_deploy.py"), "--out", str(out),
         "--validate-sizes", "10", "--deploy-sizes", ",".join(map(str, sizes))],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def over_ssh(source: Path, target: Path, port: int, key: Path, user: str) -> Path:
    """The same tree, every node hosted on a Compute reached over SSH at 127.0.0.1:port."""
    import yaml

    shutil.copytree(source.parent, target, dirs_exist_ok=True)
    data = yaml.safe_load(source.read_text())
    data["node_types"]["bench.nodes.Thing"]["derived_from"] = "tosca.nodes.SoftwareComponent"
    nodes = data["topology_template"]["node_templates"]
    for node in nodes.values():
        node["requirements"] = [{"host": "server"}, *node.get("requirements", [])]
    data["imports"] = ["orch-types:1.0.0"]
    server = {
        "type": "orch.nodes.Host",
        "properties": {"address": "127.0.0.1"},
        "capabilities": {
            "endpoint": {
                "properties": {
                    "port": port,
                    "credentials": {"user": user, "token_type": "private_key",
                                    "token": str(key)},
                }
            }
        },
    }  # fmt: skip
    data["topology_template"]["node_templates"] = {"server": server, **nodes}
    path = target / "service.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def deploy_time(blueprint: Path, workers: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        proc = subprocess.run(
            [*ORCH, "deploy", str(blueprint), "--state-dir", state, "-w", str(workers), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"orch deploy {blueprint} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def bare_script_time(script: Path, n: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/sh", str(script)], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-ssh", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    generate(root, sizes)
    server = None
    if not args.no_ssh and Path("/usr/sbin/sshd").exists() and os.geteuid() == 0:
        sys.path.insert(0, str(REPO / "tests"))
        from sites.sshd import SshServer, free_port

        sshd_root = Path(tempfile.mkdtemp(prefix="orch-bench-sshd-"))
        sshd_root.chmod(0o755)  # sshd reads the authorized keys as the user
        server = SshServer(sshd_root, free_port())
        server.start()
    rows = []
    try:
        bare = bare_script_time(root / "deploy" / f"tree_{sizes[0]}_sh" / "scripts" / "create.sh")
        for n in sizes:
            local = root / "deploy" / f"tree_{n}_sh" / "service.yaml"
            targets = [("local", local, [])]
            if server is not None:
                # as an unprivileged user: root's ~/.bashrc on this machine runs `pyenv init`
                # (~100 ms for every command sshd starts), which says nothing about orch
                remote = over_ssh(local, root / "deploy" / f"tree_{n}_ssh", server.port,
                                  server.client_key, server.unprivileged_user)  # fmt: skip
                targets.append(("ssh", remote, ["--known-hosts", str(server.known_hosts)]))
            for where, blueprint, extra in targets:
                for workers in worker_counts:
                    times = [deploy_time(blueprint, workers, extra) for _ in range(args.repeat)]
                    wall = statistics.median(times)
                    rows.append((n, where, workers, wall))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("| blueprint | where | workers | orch deploy (wall) | per operation |")
    print("|---|---|---|---|---|")
    for n, where, workers, wall in rows:
        print(f"| tree_{n}_sh | {where} | {workers} | {wall:.2f} s | {wall / n * 1000:.1f} ms |")
    print()
    for where in ("local", "ssh"):
        points = [(n, wall) for n, w, workers, wall in rows if w == where and workers == 1]
        if len(points) >= 2:
            fixed, per_op = _fit(points)
            print(f"{where}, 1 worker: fixed cost {fixed:.2f} s (process start, validation, "
                  f"plan), {per_op * 1000:.1f} ms per operation, of which the script itself "
                  f"{bare * 1000:.1f} ms: orchestration overhead "
                  f"{(per_op - bare) * 1000:.1f} ms per operation")
    print("\nGoals: tree_100_sh local <= 2 s, ssh <= 4 s (4 workers); overhead <= 10 ms/op.")


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares: wall = fixed + per_op * N."""
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum(
        (n - mean_n) ** 2 for n, _ in points
    )
    return mean_t - slope * mean_n, slope


if __name__ == "__main__":
    main()
