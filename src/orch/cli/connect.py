"""``orch connect DEPLOYMENT NODE``: a local port forwarded to the port an application listens
on, on the compute node where its job runs, through the site's login node; up while the job
runs."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.complete import deployment_names
from orch.cli.deploy import _handle_errors, _open_store, state_dir_option

WATCH_EVERY = 2.0
"""Seconds between two looks at the job (the forward closes when it has ended)."""


def _fail(message: str, code: int = exitcodes.CONFIG) -> None:
    click.echo(f"orch: {message}", err=True)
    sys.exit(code)


@click.command()
@click.argument("deployment", shell_complete=deployment_names)
@click.argument("node")
@click.option("--port", "remote_port", type=click.IntRange(1, 65535),
              help="The port the application listens on (default: its node's 'port' "
              "property).")  # fmt: skip
@click.option("--local", "local_port", type=click.IntRange(0, 65535), default=0,
              help="The local port (default: a free one).")  # fmt: skip
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="known_hosts file for SSH host keys (default ~/.ssh/known_hosts).")
@click.option("--accept-new-host-keys", is_flag=True,
              help="Trust SSH hosts seen for the first time and remember their keys.")
@state_dir_option
@_handle_errors
def connect(deployment: str, node: str, remote_port: int | None, local_port: int,
            known_hosts: tuple[Path, ...], accept_new_host_keys: bool,
            state_dir: Path) -> None:  # fmt: skip
    """Forward a local port to NODE's application, where its job runs.

    Prints the local URL, then stays up while the job runs; it ends when the job ends, or on
    Ctrl-C."""
    from orch.engine.evaluate import Scope
    from orch.engine.hosts import host_for, site_for
    from orch.executors.schedulers import scheduler_named
    from orch.executors.slurm_steps import SLURM_STEPS, is_step
    from orch.forward import PortInUse, listen
    from orch.transport.base import HostKeyPolicy

    try:  # first: a port in use is known before anything is asked of the site
        server = listen(local_port)
    except PortInUse as exc:
        _fail(f"{exc}: choose another with --local")
    store = _open_store(state_dir, create=False)
    model, evaluator = _evaluated(store, deployment)
    if node not in model.nodes:
        _fail(f"deployment '{deployment}' has no node '{node}' (nodes: "
              f"{', '.join(sorted(model.nodes))})")  # fmt: skip
    instance = _first_instance(evaluator, node)
    if remote_port is None:
        declared = declared_port(model.nodes[node], evaluator, Scope(instance))
        if declared is None:
            _fail(f"{node} declares no port (a 'port' property, or the port of its endpoint "
                  "capability): give --port")  # fmt: skip
        remote_port = declared
    job = store.active_job(deployment, instance)
    if job is None:
        _fail(f"{instance} has no running job (start it with orch deploy or orch run)", 1)
    host = host_for(evaluator, instance)
    site = site_for(evaluator, instance)
    env = dict(getattr(site, "environment", None) or {}) or None
    scheduler = scheduler_named(getattr(site, "scheduler", None) or "slurm")
    if is_step(job.job_id):  # a step of a held allocation
        scheduler = SLURM_STEPS
    policy = HostKeyPolicy.of(known_hosts, accept_new_host_keys)
    with server:
        _forward(server, host, policy, scheduler, env, job.job_id, instance, remote_port)


def _forward(server: Any, host: Any, policy: Any, scheduler: Any, env: dict[str, str] | None,
             job_id: str, instance: str, remote_port: int) -> None:  # fmt: skip
    from orch.executors.job_monitor import query
    from orch.executors.schedulers import StatusError
    from orch.forward import serve
    from orch.transport.ssh import SshTransport
    from orch.transport.ssh_connect import SshConnector

    site = SshTransport(host, policy)
    stop = threading.Event()

    def job_state() -> Any:
        try:
            return query(scheduler, site, {job_id: None}, stop, env)[job_id]
        except StatusError as exc:
            _fail(f"cannot ask {site.host} about job {job_id}: {exc}", 1)

    info = job_state()
    while not info.ended and not info.node_list:
        click.echo(f"orch: waiting for job {job_id} of {instance} to start ({info.state})",
                   err=True)  # fmt: skip
        time.sleep(WATCH_EVERY)
        info = job_state()
    if info.ended:
        _fail(f"job {job_id} of {instance} has ended ({info.state}): nothing to connect to", 1)
    address = _node_address(site, scheduler, info.node_list, env)
    connection = SshConnector(host, policy).open()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    click.echo(url)
    click.echo(f"orch: {url} -> {address}:{remote_port} (job {job_id} of {instance}, through "
               f"{site.host}); Ctrl-C ends it", err=True)  # fmt: skip

    def refused(message: str) -> None:
        click.echo(f"orch: {message}", err=True)

    pump = threading.Thread(target=serve, args=(server, connection.transport,
                                                (address, remote_port), stop, refused),
                            daemon=True)  # fmt: skip
    pump.start()
    try:
        while not info.ended:
            time.sleep(WATCH_EVERY)
            info = job_state()
        click.echo(f"orch: job {job_id} of {instance} ended ({info.state}): forward closed",
                   err=True)  # fmt: skip
    except KeyboardInterrupt:
        click.echo("orch: forward closed", err=True)
    finally:
        stop.set()
        pump.join(2)
        connection.close()
        site.close()


def _node_address(site: Any, scheduler: Any, node_list: str, env: dict[str, str] | None) -> str:
    """The first node of the job as the login node reaches it: Slurm's NodeAddr of it (node
    names need not resolve), else its name."""
    if not scheduler.name.startswith("slurm"):
        return node_list.split(",")[0].split()[0]
    command = (f"n=$(scontrol show hostnames {shlex.quote(node_list)} | head -n 1); "
               'echo "$n"; scontrol show node "$n" -o | tr " " "\\n" | sed -n "s/^NodeAddr=//p"')
    result = site.run(command, env=env, timeout=30)
    lines = [line.strip() for line in (result.stdout or "").splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else lines[0] if lines else node_list


def declared_ports(store: Any, deployment: str) -> dict[str, int]:
    """``{node: port}`` of the nodes that declare the port their application listens on (what
    ``orch connect`` reaches); empty when the deployment's model cannot be read."""
    from orch.deployments import DeploymentError
    from orch.engine.evaluate import Scope

    try:
        model, evaluator = _evaluated(store, deployment)
    except DeploymentError:
        return {}
    ports = {}
    for name, node in model.nodes.items():
        try:
            port = declared_port(node, evaluator, Scope(_first_instance(evaluator, name)))
        except Exception:  # a value not known yet (a secret input...): not listed
            continue
        if port is not None:
            ports[name] = port
    return ports


def declared_port(node: Any, evaluator: Any, scope: Any) -> int | None:
    """The port a node's application listens on: its ``port`` property, else, for a job, the
    ``port`` of its ``endpoint`` capability (TOSCA's Endpoint; a Compute's is its SSH port);
    None when it declares none."""
    value = node.properties.get("port")
    if value is None and node.is_job:
        value = (node.capabilities.get("endpoint") or {}).get("properties", {}).get("port")
    if value is None:
        return None
    value = evaluator.value(value, scope)
    return None if value in (None, "") else int(value)


def _evaluated(store: Any, deployment: str) -> tuple[Any, Any]:
    """The deployment's model, and an evaluator of its values on its stored state."""
    from orch.deployments import stored
    from orch.engine.evaluate import stored_evaluator
    from orch.plan.instances import make_instances

    model, inputs, _secrets = stored(store, deployment)
    return model, stored_evaluator(store, deployment, model, make_instances(model), inputs)


def _first_instance(evaluator: Any, node: str) -> str:
    return (evaluator.by_node.get(node) or [f"{node}/0"])[0]
