"""Shell completion of values: deployment names, node names, site names, input files.

Completion runs on every Tab, so each callback is quick and quiet: the state is read with one
read-only SQLite query (a missing state folder is never created), ``sites.yaml`` with a plain
YAML parse, and any problem means no suggestions rather than an error.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

DEFAULT_STATE_DIR = ".orch"


def state_dir_of(ctx: click.Context) -> Path:
    """The state folder the command line names so far: --state-dir, ORCH_STATE_DIR, ./.orch."""
    given = ctx.params.get("state_dir")
    if given:
        return Path(given)
    return Path(os.environ.get("ORCH_STATE_DIR") or DEFAULT_STATE_DIR)


def _query(state_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of a read-only query on the state, or [] (no state, locked, unreadable)."""
    db = state_dir / "state.db"
    if not db.is_file():
        return []
    uri = db.resolve().as_uri()
    # mode=ro reads what is in the write-ahead log too; immutable=1 needs no -shm file, for a
    # folder we may not write to
    for suffix in ("?mode=ro", "?immutable=1"):
        try:
            conn = sqlite3.connect(uri + suffix, uri=True, timeout=0.5)
        except sqlite3.Error:
            continue
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error:
            continue
        finally:
            conn.close()
    return []


def deployment_names(ctx: click.Context, _param: Any, incomplete: str) -> list[CompletionItem]:
    """The deployments of the state folder, with their status as help (zsh and fish show it)."""
    rows = _query(state_dir_of(ctx), "SELECT name, status FROM deployments ORDER BY name")
    return [
        CompletionItem(name, help=status) for name, status in rows if name.startswith(incomplete)
    ]


def node_names(ctx: click.Context, _param: Any, incomplete: str) -> list[CompletionItem]:
    """The nodes and instances of the deployment named earlier on the command line."""
    # while an option's value is completed, click leaves the positional arguments unparsed
    name = ctx.params.get("name") or (ctx.args[0] if ctx.args else None)
    if not name:
        return []
    sql = "SELECT id, node FROM instances WHERE deployment = ? ORDER BY id"
    rows = _query(state_dir_of(ctx), sql, (name,))
    nodes = sorted({node for _, node in rows})
    given = set(ctx.params.get("nodes") or ())
    choices = [*nodes, *(instance for instance, _ in rows if instance not in nodes)]
    return [
        CompletionItem(choice)
        for choice in choices
        if choice.startswith(incomplete) and choice not in given
    ]


def site_names(ctx: click.Context, _param: Any, incomplete: str) -> list[CompletionItem]:
    """The sites of the sites.yaml the command would read (--sites, ORCH_SITES, ./sites.yaml,
    ~/.config/orch/sites.yaml), less those already given."""
    import yaml

    from orch.sites.config import SitesError, find_sites_file

    try:
        path = find_sites_file(ctx.params.get("sites_file"))
        data = yaml.safe_load(path.read_text("utf-8"))
    except (SitesError, OSError, ValueError, yaml.YAMLError):
        return []
    sites = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(sites, dict):
        return []
    given = set(ctx.params.get("names") or ())
    items = []
    for name, site in sites.items():
        name = str(name)
        if name.startswith(incomplete) and name not in given:
            host = site.get("host") if isinstance(site, dict) else None
            items.append(CompletionItem(name, help=str(host) if host else None))
    return items


def input_files(_ctx: click.Context, _param: Any, incomplete: str) -> list[CompletionItem]:
    """``-i``: a file of inputs (the shell completes the path); nothing after ``name=``."""
    if "=" in incomplete:
        return []
    return [CompletionItem(incomplete, type="file")]
