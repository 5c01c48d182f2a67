"""``orch status NAME --watch``: each round, the live figures of the deployment's running
applications (``orch.live``), asked of each site with one command, until none runs (or
Ctrl-C). Text rounds are tables; with ``-f json`` each round is one JSON line (an event)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click


def watch(store: Any, name: str, fmt: str, every: float, known_hosts: tuple[Path, ...],
          accept_new: bool) -> None:  # fmt: skip
    from orch.transport.base import HostKeyPolicy

    policy = HostKeyPolicy.of(known_hosts, accept_new)
    transports: dict[Any, Any] = {}
    try:
        while True:
            figures = live_round(store, name, policy, transports)
            _show(name, figures, fmt)
            if not figures:
                click.echo(f"orch: no application of {name} runs now", err=True)
                return
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo("orch: watch ended", err=True)
    finally:
        for transport in transports.values():
            transport.close()


def live_round(store: Any, name: str, policy: Any, transports: dict[Any, Any]) -> list[Any]:
    """Every running job's figures, one command per site."""
    from orch.cli.connect import _evaluated
    from orch.engine.evaluate import Scope
    from orch.engine.hosts import host_for, site_for
    from orch.executors.schedulers import StatusError, scheduler_named
    from orch.live import Live, parse, site_command, watched
    from orch.transport.base import TransportError
    from orch.transport.ssh import SshTransport

    running = {job.instance: job for job in store.jobs(name, active=True)}
    if not running:
        return []
    model, evaluator = _evaluated(store, name)
    attributes = {i.id: dict(i.attributes or {}) for i in store.instances(name)}
    by_site: dict[Any, tuple[Any, Any, list[Any]]] = {}
    for instance, job in sorted(running.items()):
        node = model.nodes.get(instance.rsplit("/", 1)[0])
        if node is None:
            continue
        try:
            properties = evaluator.value(node.properties, Scope(instance=instance))
        except Exception:  # a value not known yet: no progress read
            properties = {}
        host = host_for(evaluator, instance)
        site = site_for(evaluator, instance)
        entry = by_site.setdefault(host.key, (host, site, []))
        entry[2].append(watched(instance, job.job_id, properties, attributes.get(instance, {})))
    figures: list[Live] = []
    for key, (host, site, jobs) in by_site.items():
        env = {str(k): str(v) for k, v in (getattr(site, "environment", None) or {}).items()}
        scheduler = getattr(site, "scheduler", None) or "slurm"
        try:
            if key not in transports:
                transports[key] = SshTransport(host, policy)
            if scheduler == "slurm":
                result = transports[key].run(site_command(jobs), env=env or None, timeout=60)
                figures += parse(result.stdout or "", jobs).values()
            else:
                from orch.executors.job_monitor import query

                infos = query(scheduler_named(scheduler), transports[key],
                              {j.job_id: None for j in jobs}, threading.Event(),
                              env or None)  # fmt: skip
                figures += [Live(j.instance, j.job_id, infos[j.job_id].state,
                                 infos[j.job_id].elapsed, nodes=infos[j.job_id].node_list)
                            for j in jobs]  # fmt: skip
        except (TransportError, StatusError, OSError) as exc:
            figures += [Live(j.instance, j.job_id, error=f"{host.describe()}: {exc}")
                        for j in jobs]  # fmt: skip
    return sorted(figures, key=lambda f: f.instance)


def _show(name: str, figures: list[Any], fmt: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if fmt == "json":
        click.echo(json.dumps({"event": "live", "deployment": name, "time": now,
                               "applications": [f.as_dict() for f in figures]}))  # fmt: skip
        return
    from orch.cli.views import _columns

    rows = [[f.instance, f.job_id, f.state or "?", f.elapsed, f.left, f.nodes,
             "" if f.cpu_seconds is None else f"{f.cpu_seconds:.1f}s"
             + ("" if f.cpu_percent is None else f" ({f.cpu_percent:.0f}%)"),
             "" if f.max_rss_mb is None else f"{f.max_rss_mb:.0f} MB",
             f.error or f.progress] for f in figures]  # fmt: skip
    click.echo(f"{name} at {now}")
    if rows:
        click.echo(_columns(["INSTANCE", "JOB", "STATE", "ELAPSED", "LEFT", "NODES", "CPU",
                             "MEMORY", "PROGRESS"], rows), nl=False)  # fmt: skip
    sys.stdout.flush()
