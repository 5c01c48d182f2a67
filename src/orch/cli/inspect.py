"""``orch list / status / outputs / logs``: read the state store, never change it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.complete import deployment_names, node_names
from orch.cli.deploy import state_dir_option


def _no_state(state_dir: Path) -> str:
    """Where orch looked for deployments, and how to point it elsewhere."""
    return (
        f"no deployments in {state_dir.absolute()} (deploy one with `orch deploy BLUEPRINT`, "
        "or point --state-dir / ORCH_STATE_DIR at another folder)"
    )


def _store(state_dir: Path) -> Any:
    from orch.state import StateError, Store

    if not (state_dir / "state.db").exists():
        click.echo(f"orch: {_no_state(state_dir)}", err=True)
        sys.exit(exitcodes.CONFIG)
    try:
        return Store.open(state_dir, create=False)
    except StateError as exc:
        click.echo(f"orch: {exc}", err=True)
        sys.exit(exitcodes.CONFIG)


def _deployment(store: Any, name: str) -> Any:
    deployment = store.deployment(name)
    if deployment is None:
        known = ", ".join(d.name for d in store.deployments()) or "none"
        click.echo(f"orch: no deployment '{name}' (deployments: {known})", err=True)
        sys.exit(exitcodes.CONFIG)
    deployment.status = store.live_status(deployment)  # 'interrupted' when its orch is gone
    return deployment


def _lost_warning(store: Any) -> None:
    """Deployments whose rows the database lost are said, whatever is listed."""
    from orch.state import health

    lost = store.lost_deployments()
    if lost:
        click.echo(f"orch: warning: {health.lost_message(store.root, lost)}", err=True)


def _operations(store: Any, name: str) -> list[Any]:
    """The operations, those of runs whose orch is gone shown as interrupted (with the time
    of the run's last event as their end), not as running for ever."""
    operations = store.operations(name)
    stale = store.stale_runs(name)
    for op in operations:
        if op.status == "running" and op.run_id in stale:
            op.status = "interrupted"
            op.ended = store.last_event_time(op.run_id) or op.started
            op.message = f"interrupted: orch pid {stale[op.run_id]} is gone"
    return operations


def _format_option(choices: list[str], default: str) -> Any:
    return click.option(
        "-f", "--format", "fmt", type=click.Choice(choices), default=default, show_default=True
    )


@click.command("list")
@_format_option(["text", "json"], "text")
@state_dir_option
def list_deployments(fmt: str, state_dir: Path) -> None:
    """List the deployments of the state folder with their status.

    With none (or no state folder, which is not created), says on stderr which folder it
    looked in, and exits 0 (json: []).
    """
    from orch.cli.views import deployments_table

    rows = []
    if (state_dir / "state.db").exists():
        store = _store(state_dir)
        _lost_warning(store)
        rows = store.deployments()
        for row in rows:
            row.status = store.live_status(row)
    if not rows:
        click.echo(f"orch: {_no_state(state_dir)}", err=True)
    text = deployments_table(rows, fmt)
    if text:
        click.echo(text, nl=False)


@click.command()
@click.argument("name", shell_complete=deployment_names)
@_format_option(["text", "json"], "text")
@click.option("--watch", is_flag=True,
              help="Follow the running applications live, as their sites' schedulers see them "
              "(job or step, state, elapsed and remaining time, nodes, CPU and memory, "
              "progress) until none runs; with -f json one line per round.")  # fmt: skip
@click.option("--every", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between two rounds of --watch.")
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="known_hosts file for SSH host keys, for --watch (default ~/.ssh/known_hosts).")
@click.option("--accept-new-host-keys", is_flag=True,
              help="For --watch: trust SSH hosts seen for the first time.")
@state_dir_option
def status(name: str, fmt: str, watch: bool, every: float, known_hosts: tuple[Path, ...],
           accept_new_host_keys: bool, state_dir: Path) -> None:  # fmt: skip
    """Show deployment NAME: its status, each instance's state, failed operations."""
    from orch.cli.connect import declared_ports
    from orch.cli.views import status_view

    store = _store(state_dir)
    deployment = _deployment(store, name)
    if watch:
        from orch.cli.watch import watch as follow

        follow(store, name, fmt, every, known_hosts, accept_new_host_keys)
        return
    jobs = store.jobs(name)
    # only jobs listen on ports orch connect reaches: no model read for the others
    ports = declared_ports(store, name) if jobs else {}
    click.echo(
        status_view(
            deployment, store.instances(name), _operations(store, name), fmt, jobs, ports,
        ),
        nl=False,
    )  # fmt: skip


@click.command()
@click.argument("name", shell_complete=deployment_names)
@_format_option(["json", "yaml", "text"], "json")
@click.option("--show-secrets", is_flag=True,
              help="Show the outputs that hold secrets too: they are evaluated again from the "
              "state, with the secret inputs they read given again with -i (never stored).")
@click.option("-i", "--inputs", "input_specs", multiple=True, metavar="FILE|NAME=VALUE",
              help="With --show-secrets: the secret inputs, given again (repeatable).")
@state_dir_option
def outputs(
    name: str, fmt: str, show_secrets: bool, input_specs: tuple[str, ...], state_dir: Path
) -> None:
    """Print the outputs of deployment NAME. Outputs that hold a secret show as
    '<secret: hidden>' unless --show-secrets."""
    from orch.cli.views import outputs_view

    store = _store(state_dir)
    deployment = _deployment(store, name)
    values = deployment.outputs
    if show_secrets:
        from orch import deployments

        try:
            values = deployments.outputs_with_secrets(store, name, list(input_specs))
        except deployments.DeploymentError as exc:
            click.echo(f"orch: {exc}", err=True)
            sys.exit(exitcodes.CONFIG)
        except deployments.BlueprintProblems as exc:
            for diagnostic in exc.diagnostics:
                click.echo(f"orch: {diagnostic.message}", err=True)
            sys.exit(exitcodes.FINDINGS)
    click.echo(outputs_view(values, fmt), nl=False)


@click.command()
@click.argument("name", shell_complete=deployment_names)
@click.option("--follow", is_flag=True, help="Keep printing new output until the run ends.")
@click.option("--node", "nodes", multiple=True, metavar="NODE|INSTANCE",
              shell_complete=node_names,
              help="Only the operations of this node or instance (repeatable); a relationship's "
              "operations belong to both ends.")  # fmt: skip
@click.option("--tail", type=click.IntRange(min=0), metavar="N",
              help="Only the last N lines of each operation's output so far.")  # fmt: skip
@click.option("--artifacts", "folders", is_flag=True,
              help="Print where each operation's folder of records is instead of its output: "
              "one line per operation, 'ID INSTANCE INTERFACE.OPERATION STATUS FOLDER'. The "
              "folder holds stdout, stderr, rc, status and task.json (secrets masked), and an "
              "Ansible operation's ansible-runner files.")  # fmt: skip
@_format_option(["text", "json"], "text")
@state_dir_option
def logs(
    name: str, follow: bool, nodes: tuple[str, ...], tail: int | None, folders: bool, fmt: str,
    state_dir: Path,
) -> None:  # fmt: skip
    """Print the output of deployment NAME's operations (latest run last).

    \b
    --format json prints one object per line (each with "version": 1):
      {"kind": "operation", "id", "run_id", "step", "instance", "node", "operation", "host",
       "status", "rc", "started", "ended", "elapsed", "attempt", "message"}
      {"kind": "line", "operation_id", "instance", "node", "operation", "stream", "text"}
      {"kind": "note", "text"}
    An operation is printed before its lines, and again when it ends under --follow.
    On a terminal, control characters of the output are shown escaped (\x1b...).

    \b
    --artifacts --format json prints one object per operation:
      {"kind": "artifacts", "version": 1, "operation_id", "instance", "node", "operation",
       "status", "path"}
    """
    from orch.cli.views import log_records

    store = _store(state_dir)
    _deployment(store, name)
    match = _node_filter(store, name, nodes) if nodes else None
    if folders:
        _print_folders(store, name, match, fmt)
        return
    out = _LogWriter(sys.stdout, fmt, flush=follow)
    try:
        records = log_records(
            store, name, store.operations(name), follow=follow, match=match, tail=tail
        )
        for record in records:
            out.write(record)
    except KeyboardInterrupt:
        pass


def _print_folders(store: Any, name: str, match: Any, fmt: str) -> None:
    """``orch logs --artifacts``: each operation's folder of records, oldest first."""
    import json

    for op in store.operations(name):
        if match is not None and not match(op):
            continue
        path = store.artifacts_dir(name, op.id)
        if fmt == "json":
            click.echo(json.dumps({
                "kind": "artifacts", "version": 1, "operation_id": op.id,
                "instance": op.instance, "node": op.node,
                "operation": f"{op.interface}.{op.operation}", "status": op.status,
                "path": str(path),
            }))  # fmt: skip
        else:
            click.echo(f"{op.id} {op.instance} {op.interface}.{op.operation} {op.status} {path}")


def _node_filter(store: Any, name: str, wanted: tuple[str, ...]) -> Any:
    """Which operations ``--node`` keeps; an unknown node or instance is a usage error."""
    from orch.tosca.diagnostics import did_you_mean

    node_of = {row.id: row.node for row in store.instances(name)}
    known = set(node_of) | set(node_of.values())
    for given in wanted:
        if known and given not in known:  # none known yet: a deploy about to save them
            raise click.BadParameter(
                f"no node or instance {given!r} in deployment '{name}'; "
                + did_you_mean(given, known),
                param_hint="'--node'",
            )
    names = set(wanted)

    def match(op: Any) -> bool:
        ends = [op.instance]
        if ">" in op.instance:  # a relationship's operation: 'source>target#requirement'
            source, _, rest = op.instance.partition(">")
            ends = [source, rest.partition("#")[0]]
        return op.node in names or any(e in names or node_of.get(e) in names for e in ends)

    return match


class _LogWriter:
    """Writes log records to stdout: as they are to pipes and files (byte for byte), with
    control characters escaped on a terminal."""

    def __init__(self, stream: Any, fmt: str, *, flush: bool):
        self.stream = stream
        self.fmt = fmt
        self.flush = flush
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.binary = getattr(stream, "buffer", None)

    def write(self, record: Any) -> None:
        import json

        from orch.cli.views import escape_controls, log_json, log_text

        if self.stream is None:  # stdout closed (`>&-`): nothing to write to
            return
        if self.fmt == "json":
            line = json.dumps(log_json(record), ensure_ascii=self.tty, default=str)
        else:
            line = log_text(record)
            if self.tty:
                line = escape_controls(line)
        if self.binary is None or self.tty:
            self.stream.write(line + "\n")
        else:  # the output's own bytes, whatever the locale says
            self.binary.write((line + "\n").encode("utf-8", "surrogateescape"))
        if self.flush:
            (self.binary or self.stream).flush()
