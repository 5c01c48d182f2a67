"""``orch secrets`` (set, list, remove): the values that blueprints read with Yorc's
``get_secret``, kept by orch (see ``orch.sites.secrets``).

A value is read from standard input (or ``--file``), never from the command line, where other
users could see it (``ps``, shell history); nothing here ever prints a value.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes


def _fail(message: str, code: int = exitcodes.CONFIG) -> None:
    click.echo(f"orch: {message}", err=True)
    sys.exit(code)


def _secret_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A SecretError is a one-line message and exit 3, never a traceback (nor a value)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orch.sites.secrets import SecretError

        try:
            return func(*args, **kwargs)
        except SecretError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot use the secret store: {exc.strerror or exc} ({exc.filename or ''})")

    return wrapper


def _store() -> Any:
    from orch.sites.secrets import SecretStore

    return SecretStore.default()


@click.group("secrets")
def secrets() -> None:
    """Values for get_secret, kept by orch (never shown).

    \b
    Blueprints of the Alien4Cloud/Yorc dialect read service passwords with
      password: { get_secret: [/secret/data/services_secrets/dls, data=password] }
    orch answers from its own store: store that one with
      orch secrets set /secret/data/services_secrets/dls password < password-file

    Entries live in $ORCH_DATA_HOME (else $XDG_DATA_HOME/orch, else ~/.local/share/orch)
    under secrets/, 0600 files in a 0700 folder. Vault's KV v2 spellings of a path are one
    entry: /secret/data/x, secret/data/x and /secret/x are all secret/x. Without data=, a
    call reads the field 'value'.
    """


def _read_value(file: Path | None) -> str:
    from orch.sites.secrets import MAX_VALUE_BYTES, SecretError, value_from_bytes
    from orch.tosca.loader import read_regular

    if file is not None:
        try:
            data = read_regular(file, MAX_VALUE_BYTES, "a secret file")
        except OSError as exc:
            raise SecretError(f"cannot read {file}: {exc.strerror or exc}") from None
        return value_from_bytes(data)
    if sys.stdin is None:  # started with standard input closed
        raise SecretError("no standard input to read the value from: give it, or use --file")
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        text = click.prompt("value (not shown)", hide_input=True, confirmation_prompt=True,
                            err=True)  # fmt: skip
        return value_from_bytes(text.encode("utf-8", "surrogateescape"))
    data = sys.stdin.buffer.read(MAX_VALUE_BYTES + 1)
    return value_from_bytes(data)


@secrets.command("set", short_help="Store a secret, read from stdin (or --file).")
@click.argument("path")
@click.argument("field")
@click.argument("extra", nargs=-1, metavar="")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the value from this file (else from standard input).")  # fmt: skip
@_secret_errors
def set_secret(path: str, field: str, extra: tuple[str, ...], file: Path | None) -> None:
    """Store the value of FIELD at PATH, read from standard input (or --file; one trailing
    newline is dropped). A terminal is asked twice, without echo. Replaces a stored value."""
    from orch.sites.secrets import entry, shown

    if extra:  # (not echoed: it may be the value)
        _fail(
            "orch secrets set takes PATH and FIELD only: the value is read from standard input "
            "(or --file), never from the command line, where other users and the shell's "
            "history see it; nothing stored",
            exitcodes.USAGE,
        )
    item = entry(path, field)  # a bad name is said before anything is read
    value = _read_value(file)
    item, replaced = _store().set(item.path, item.field, value)
    click.echo(
        f"orch: {'replaced' if replaced else 'stored'} secret '{shown(item.field)}' at "
        f"'{shown(item.path)}'",
        err=True,
    )


@secrets.command("list", short_help="List the stored secrets (never their values).")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="text for people, json for programs (on stdout).")  # fmt: skip
@_secret_errors
def list_secrets(fmt: str) -> None:
    """List the stored secrets: paths and fields, never values."""
    from orch.sites.secrets import shown

    store = _store()
    found = store.list()
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in found], indent=2, ensure_ascii=False))
        return
    click.echo(f"secrets in {store.root}", err=True)
    rows = [(shown(e.path, 400), shown(e.field)) for e in found]
    width = max([len("PATH"), *(len(p) for p, _ in rows)])
    click.echo(f"{'PATH'.ljust(width)}  FIELD")
    for path, field in rows:
        click.echo(f"{path.ljust(width)}  {field}")


@secrets.command("remove", short_help="Delete a stored secret (or all fields of a path).")
@click.argument("path")
@click.argument("field", required=False)
@_secret_errors
def remove_secret(path: str, field: str | None) -> None:
    """Delete FIELD at PATH, or every field stored at PATH."""
    from orch.sites.secrets import shown

    for item in _store().remove(path, field):
        click.echo(f"orch: removed secret '{shown(item.field)}' at '{shown(item.path)}'",
                   err=True)  # fmt: skip


def check_secrets(
    model: Any, inputs: Any = None, verb: str = "deploy", nodes: Any = None
) -> None:
    """Before anything runs: every get_secret call of ``model`` (of ``nodes`` only, when
    given: what a workflow runs) has a stored value, else say which (node, property or input,
    path, field), how to store them, and exit 3."""
    from orch.sites.secrets import missing_message, missing_secrets

    short: list[Any] = []
    missing = missing_secrets(model, inputs, short=short)
    if nodes is not None:
        missing = [m for m in missing if m.node in nodes]
        short = [m for m in short if m.node in nodes]
    if missing:
        _fail(missing_message(missing, verb))
    for item in short:
        click.echo(f"orch: warning: {item.describe()}", err=True)
