#!/usr/bin/env python3
"""Deploy benchmark: ``orch deploy`` of the shared generator's blueprints, as whole processes.

Shell: ``tree_N_sh`` (a one-line shell script per node), locally and over SSH to a loopback
OpenSSH server. Prints a markdown table (wall time, time per operation), then orch's own
overhead per operation: the slope of wall time against N at 1 worker (so the fixed start-up cost
is apart), minus the cost of running the script itself in a bare loop. Goals (issue 3):
tree_100_sh locally <= 2 s and over SSH <= 4 s with 4 workers; overhead <= 10 ms per operation.

Ansible: ``tree_N`` (a one-task playbook per node, on localhost), orch beside xOpera 0.7.0 in
the same run (``opera deploy`` in a fresh copy of the blueprint each time, its venv's
``ansible-playbook`` first on PATH). A one-node check first proves that both ran the playbook.
Goal: orch >= 2x faster than xOpera at 4 workers on tree_50. xOpera: ``--xopera PATH`` (its
``opera`` or its venv), else $ORCH_XOPERA, else installed into ~/.cache/orch-bench/xopera-0.7.0.

Usage: benchmarks/deploy.py [--sizes 10,100,500] [--ansible-sizes 10,50] [--workers 1,4]
       [--repeat 3] [--no-ssh] [--ansible-only | --no-ansible] [--xopera PATH] [--with-runner]
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
XOPERA_VERSION = "0.7.0"
XOPERA_CACHE = Path.home() / ".cache" / "orch-bench" / f"xopera-{XOPERA_VERSION}"
# opera 0.7.0 pins PyYAML 5.4.1, which does not build with Cython 3 (../shared/README.md)
XOPERA_INSTALL = (
    ["cython<3", "wheel", "setuptools<70"],
    ["--no-build-isolation", "pyyaml==5.4.1"],
    [f"opera=={XOPERA_VERSION}"],
)


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


def deploy_time(
    blueprint: Path, workers: int, extra: list[str], env: dict[str, str] | None = None
) -> float:
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        proc = subprocess.run(
            [*ORCH, "deploy", str(blueprint), "--state-dir", state, "-w", str(workers), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
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


def shell_rows(root: Path, sizes: list[int], worker_counts: list[int], args) -> None:
    """The tree_N_sh table, locally and (as root, with sshd) over SSH, and the overhead fit."""
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
    print("| blueprint | where | workers | orch deploy (wall) | per operation |")
    print("|---|---|---|---|---|")
    for n, where, workers, wall in rows:
        print(f"| tree_{n}_sh | {where} | {workers} | {wall:.2f} s | {wall / n * 1000:.1f} ms |")
    print()
    for where in ("local", "ssh"):
        points = [(n, wall) for n, w, workers, wall in rows if w == where and workers == 1]
        if len(points) >= 2:
            fixed, per_op = _fit(points)
            print(
                f"{where}, 1 worker: fixed cost {fixed:.2f} s (process start, validation, "
                f"plan), {per_op * 1000:.1f} ms per operation, of which the script itself "
                f"{bare * 1000:.1f} ms: orchestration overhead "
                f"{(per_op - bare) * 1000:.1f} ms per operation"
            )
    print("\nGoals: tree_100_sh local <= 2 s, ssh <= 4 s (4 workers); overhead <= 10 ms/op.")


# -- Ansible: orch beside xOpera ----------------------------------------------------------------


class NotRun(Exception):
    """xOpera cannot be measured here; the message says why."""


def find_xopera(option: str | None) -> Path:
    """The ``opera`` executable: given, or from the cache venv (installed there if missing)."""
    given = option or os.environ.get("ORCH_XOPERA")
    if given:
        path = Path(given).expanduser()
        opera = path / "bin" / "opera" if path.is_dir() else path
        if not os.access(opera, os.X_OK):
            raise NotRun(f"{opera} is not an executable")
        return opera
    opera = XOPERA_CACHE / "bin" / "opera"
    if not os.access(opera, os.X_OK):
        install_xopera(XOPERA_CACHE)
    return opera


def install_xopera(venv: Path) -> None:
    print(f"installing xOpera {XOPERA_VERSION} into {venv} ...", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(venv)]]
    steps += [[str(venv / "bin" / "pip"), "install", "-q", *spec] for spec in XOPERA_INSTALL]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise NotRun(
                f"cannot install xOpera {XOPERA_VERSION}: {' '.join(step[-2:])}: "
                f"{_last_line(proc.stderr or proc.stdout)}"
            )


def xopera_time(
    opera: Path, blueprint_dir: Path, workers: int, extra_env: dict[str, str] | None = None
) -> float:
    """``opera deploy`` in a fresh copy of the blueprint (it keeps its state in ``.opera/``),
    with the ``ansible-playbook`` of its venv first on PATH."""
    path = f"{opera.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **(extra_env or {}), "PATH": path}
    with tempfile.TemporaryDirectory(prefix="orch-bench-xopera-") as scratch:
        work = Path(scratch) / blueprint_dir.name
        shutil.copytree(blueprint_dir, work)
        started = time.perf_counter()
        proc = subprocess.run(
            [str(opera), "deploy", "--workers", str(workers), "service.yaml"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise NotRun(
            f"opera deploy {blueprint_dir.name} failed ({proc.returncode}): "
            f"{_last_line(proc.stderr)}"
        )
    return elapsed


def one_op_check(root: Path, source: Path) -> Path:
    """``source`` cut to its first node, whose playbook also touches a marker file: a tool that
    deploys it without creating the marker did not run the playbook."""
    import yaml

    target = root / "deploy" / "check_1"
    shutil.copytree(source, target)
    service = target / "service.yaml"
    data = yaml.safe_load(service.read_text())
    nodes = data["topology_template"]["node_templates"]
    first = next(iter(nodes))
    data["topology_template"]["node_templates"] = {first: nodes[first]}
    service.write_text(yaml.safe_dump(data, sort_keys=False))
    playbook = target / "playbooks" / "create.yaml"
    plays = yaml.safe_load(playbook.read_text())
    plays[0]["tasks"].append(
        {
            "name": "mark",
            "ansible.builtin.file": {
                "path": "{{ lookup('env', 'ORCH_BENCH_MARKER') }}",
                "state": "touch",
            },
        }
    )
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    return target


def check_both_run(check: Path, opera: Path | None) -> str | None:
    """Deploys the one-node check with orch (must run the playbook) and xOpera; returns why
    xOpera cannot be measured, or None."""
    with tempfile.TemporaryDirectory(prefix="orch-bench-marker-") as scratch:
        marker = Path(scratch) / "ran"
        extra = {"ORCH_BENCH_MARKER": str(marker)}
        deploy_time(check / "service.yaml", 1, [], {**os.environ, **extra})
        if not marker.exists():
            raise SystemExit("orch deploy did not run the check playbook")
        if opera is None:
            return None
        marker.unlink()
        try:
            xopera_time(opera, check, 1, extra)
        except NotRun as exc:
            return str(exc)
        return None if marker.exists() else "opera deploy did not run the check playbook"


def ansible_rows(root: Path, sizes: list[int], worker_counts: list[int], args) -> None:
    """tree_N (Ansible) with orch and xOpera, medians of ``--repeat`` runs, and the goal."""
    try:
        opera: Path | None = find_xopera(args.xopera)
        why_not = None
    except NotRun as exc:
        opera, why_not = None, str(exc)
    why_not = (
        check_both_run(one_op_check(root, root / "deploy" / f"tree_{sizes[0]}"), opera) or why_not
    )
    runner_env = {**os.environ, "ORCH_ANSIBLE_FORK_SERVER": "0"}
    rows = []
    for n in sizes:
        blueprint = root / "deploy" / f"tree_{n}"
        for workers in worker_counts:
            orch = statistics.median(
                deploy_time(blueprint / "service.yaml", workers, []) for _ in range(args.repeat)
            )
            runner = None
            if args.with_runner:
                runner = statistics.median(
                    deploy_time(blueprint / "service.yaml", workers, [], runner_env)
                    for _ in range(args.repeat)
                )
            xopera: float | str
            if why_not is None:
                try:
                    xopera = statistics.median(
                        xopera_time(opera, blueprint, workers) for _ in range(args.repeat)
                    )
                except NotRun as exc:
                    xopera = f"not run ({exc})"
            else:
                xopera = f"not run ({why_not})"
            rows.append((n, workers, orch, runner, xopera))
    _print_ansible(rows, args.with_runner)


def _print_ansible(rows: list[tuple], with_runner: bool) -> None:
    runner_head = " orch, ORCH_ANSIBLE_FORK_SERVER=0 |" if with_runner else ""
    print(
        f"| blueprint | workers | orch deploy (wall) |{runner_head} "
        f"xOpera {XOPERA_VERSION} deploy | xOpera / orch |"
    )
    print("|---|---|---|" + ("---|" if with_runner else "") + "---|---|")
    goal = None
    for n, workers, orch, runner, xopera in rows:
        runner_cell = f" {runner:.2f} s |" if with_runner else ""
        if isinstance(xopera, float):
            ratio = xopera / orch
            cells = f"{xopera:.2f} s | {ratio:.1f}x"
            if n == 50 and workers == 4:
                goal = ratio
        else:
            cells = f"{xopera} | -"
        print(f"| tree_{n} | {workers} | {orch:.2f} s |{runner_cell} {cells} |")
    verdict = (
        "not measured" if goal is None else f"{'met' if goal >= 2 else 'NOT met'} ({goal:.1f}x)"
    )
    print(f"\nGoal: orch >= 2x faster than xOpera at 4 workers on tree_50: {verdict}.")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500", help="tree_N_sh sizes")
    parser.add_argument("--ansible-sizes", default="10,50", help="tree_N (Ansible) sizes")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-ssh", action="store_true")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--ansible-only", action="store_true", help="only orch beside xOpera")
    only.add_argument("--no-ansible", action="store_true", help="only the tree_N_sh rows")
    parser.add_argument("--xopera", help="xOpera's opera executable or venv (or $ORCH_XOPERA)")
    parser.add_argument("--with-runner", action="store_true",
                        help="also orch with ansible-runner's process per playbook")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ansible_sizes = [int(s) for s in args.ansible_sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    try:
        generate(root, sorted(set(sizes) | set(ansible_sizes)))
        if not args.ansible_only:
            shell_rows(root, sizes, worker_counts, args)
        if not args.no_ansible:
            if not args.ansible_only:
                print()
            ansible_rows(root, ansible_sizes, worker_counts, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
