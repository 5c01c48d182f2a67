"""``orch serve`` (the REST API of HPC Workflows as a Service) and what its owner manages:
``orch publish / unpublish``, ``orch users``, ``orch tokens``. FastAPI and uvicorn (the
``serve`` extra) are imported only by ``orch serve`` itself."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.complete import deployment_names
from orch.cli.deploy import _handle_errors, _open_store, state_dir_option


def _records(state_dir: Path) -> Any:
    from orch.serve.store import ServeStore

    return ServeStore(state_dir)


def _serve_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A ServeError is one line and exit 3."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orch.serve.store import ServeError

        try:
            return func(*args, **kwargs)
        except ServeError as exc:
            click.echo(f"orch: {exc}", err=True)
            sys.exit(exitcodes.CONFIG)

    return wrapper


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"'{value}': give HOST:PORT", param_hint="--listen")
    return host.strip("[]"), int(port)


@click.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to listen on (loopback by default: put a TLS proxy in front to "
              "offer it to others).")  # fmt: skip
@state_dir_option
def serve(listen: str, state_dir: Path) -> None:
    """Serve the published workflows over a REST API (eFlows4HPC's hpcwaas-api).

    \b
    GET /workflows, POST /workflows/NAME {"inputs": {...}}, GET|DELETE /executions/ID,
    GET /executions/ID/logs, POST /ssh_keys; /docs and /openapi.json describe them.
    Every request needs "Authorization: Bearer TOKEN" (orch tokens create USER)."""
    host, port = _listen(listen)
    try:
        import uvicorn

        from orch.serve.app import create_app
    except ImportError as exc:
        click.echo(f"orch: orch serve needs the serve extra ({exc.name} is missing): "
                   "pip install 'orch[serve]'", err=True)  # fmt: skip
        sys.exit(exitcodes.CONFIG)
    app = create_app(state_dir)
    click.echo(f"orch serve: listening on http://{host}:{port} (state: {state_dir})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@click.command()
@click.argument("deployment", shell_complete=deployment_names)
@click.argument("workflow")
@click.option("--name", help="The name users see and trigger (default: WORKFLOW).")
@click.option("--users", default="", metavar="U1,U2",
              help="Only these users see it (default: every user).")  # fmt: skip
@click.option("--own-accounts", is_flag=True,
              help="Its executions log into sites with their invoker's own account only (a "
              "key made with metadata site and login), never with sites.yaml's.")  # fmt: skip
@state_dir_option
@_handle_errors
@_serve_errors
def publish(deployment: str, workflow: str, name: str | None, users: str, own_accounts: bool,
            state_dir: Path) -> None:  # fmt: skip
    """Offer DEPLOYMENT's imperative WORKFLOW to the users of orch serve."""
    from orch.deployments import DeploymentError, stored

    store = _open_store(state_dir, create=False)
    model, _inputs, _secrets = stored(store, deployment)
    if workflow not in model.workflows:
        known = ", ".join(sorted(model.workflows)) or "none"
        raise DeploymentError(
            f"deployment '{deployment}' has no workflow '{workflow}' (workflows: {known})"
        )
    records = _records(state_dir)
    allowed = [u.strip() for u in users.split(",") if u.strip()]
    known_users = {u for u, _ in records.users()}
    unknown = [u for u in allowed if u not in known_users]
    if unknown:
        click.echo(f"orch: warning: no user {', '.join(unknown)} yet", err=True)
    records.publish(name or workflow, deployment, workflow, allowed, own_accounts)
    who = ", ".join(allowed) if allowed else "every user"
    click.echo(f"orch: published '{name or workflow}' ({deployment} {workflow}) to {who}",
               err=True)  # fmt: skip


@click.command()
@click.argument("name")
@state_dir_option
@_serve_errors
def unpublish(name: str, state_dir: Path) -> None:
    """Stop offering the published workflow NAME (its executions go on)."""
    _records(state_dir).unpublish(name)
    click.echo(f"orch: unpublished '{name}'", err=True)


@click.group()
def users() -> None:
    """The users of orch serve."""


@users.command("add")
@click.argument("name")
@state_dir_option
@_serve_errors
def users_add(name: str, state_dir: Path) -> None:
    """Add the user NAME (then give them a token: orch tokens create NAME)."""
    _records(state_dir).add_user(name)
    click.echo(f"orch: added user '{name}'", err=True)


@users.command("list")
@state_dir_option
def users_list(state_dir: Path) -> None:
    """List the users and how many tokens each has."""
    for name, count in _records(state_dir).users():
        click.echo(f"{name}\t{count} token(s)")


@users.command("remove")
@click.argument("name")
@state_dir_option
@_serve_errors
def users_remove(name: str, state_dir: Path) -> None:
    """Remove the user NAME and their tokens."""
    _records(state_dir).remove_user(name)
    click.echo(f"orch: removed user '{name}'", err=True)


@click.group()
def tokens() -> None:
    """The bearer tokens of orch serve's users (kept hashed: shown once)."""


@tokens.command("create")
@click.argument("user")
@state_dir_option
@_serve_errors
def tokens_create(user: str, state_dir: Path) -> None:
    """Make a token for USER and print it (only now: it is kept hashed)."""
    token_id, token = _records(state_dir).create_token(user)
    click.echo(token)
    click.echo(f"orch: token {token_id} for '{user}' (revoke: orch tokens revoke {token_id})",
               err=True)  # fmt: skip


@tokens.command("list")
@state_dir_option
def tokens_list(state_dir: Path) -> None:
    """List the tokens (id, user, created): the tokens themselves are not kept."""
    import datetime

    for token_id, user, created in _records(state_dir).tokens():
        when = datetime.datetime.fromtimestamp(created).isoformat(sep=" ", timespec="seconds")
        click.echo(f"{token_id}\t{user}\t{when}")


@tokens.command("revoke")
@click.argument("token_id")
@state_dir_option
@_serve_errors
def tokens_revoke(token_id: str, state_dir: Path) -> None:
    """Revoke the token TOKEN_ID (the part of the token before the dot)."""
    _records(state_dir).revoke_token(token_id.partition(".")[0])
    click.echo(f"orch: revoked token {token_id.partition('.')[0]}", err=True)
