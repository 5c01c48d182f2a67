"""``orch list / status / outputs / logs``: read the state store, never change it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.deploy import state_dir_option


def _store(state_dir: Path) -> Any:
    from orch.state import StateError, Store

    if not (state_dir / "state.db").exists():
        click.echo(
            f"orch: no deployments in {state_dir} (deploy one with `orch deploy BLUEPRINT`, "
            "or point --state-dir / ORCH_STATE_DIR at another folder)",
            err=True,
        )
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
    return deployment


def _format_option(choices: list[str], default: str) -> Any:
    return click.option(
        "-f", "--format", "fmt", type=click.Choice(choices), default=default, show_default=True
    )


@click.command("list")
@_format_option(["text", "json"], "text")
@state_dir_option
def list_deployments(fmt: str, state_dir: Path) -> None:
    """List the deployments of the state folder with their status."""
    from orch.cli.views import deployments_table

    if not (state_dir / "state.db").exists():
        click.echo("[]" if fmt == "json" else "", nl=fmt == "json")
        return
    store = _store(state_dir)
    click.echo(deployments_table(store.deployments(), fmt), nl=False)


@click.command()
@click.argument("name")
@_format_option(["text", "json"], "text")
@state_dir_option
def status(name: str, fmt: str, state_dir: Path) -> None:
    """Show deployment NAME: its status, each instance's state, failed operations."""
    from orch.cli.views import status_view

    store = _store(state_dir)
    deployment = _deployment(store, name)
    click.echo(
        status_view(
            deployment, store.instances(name), store.operations(name), fmt, store.jobs(name)
        ),
        nl=False,
    )


@click.command()
@click.argument("name")
@_format_option(["json", "yaml", "text"], "json")
@state_dir_option
def outputs(name: str, fmt: str, state_dir: Path) -> None:
    """Print the outputs of deployment NAME."""
    from orch.cli.views import outputs_view

    store = _store(state_dir)
    deployment = _deployment(store, name)
    click.echo(outputs_view(deployment.outputs, fmt), nl=False)


@click.command()
@click.argument("name")
@click.option("--follow", is_flag=True, help="Keep printing new output until the run ends.")
@state_dir_option
def logs(name: str, follow: bool, state_dir: Path) -> None:
    """Print the output of deployment NAME's operations (latest run last)."""
    from orch.cli.views import log_lines

    store = _store(state_dir)
    _deployment(store, name)
    try:
        for line in log_lines(store, name, store.operations(name), follow=follow):
            click.echo(line)
    except KeyboardInterrupt:
        pass
