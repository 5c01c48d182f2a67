"""Writing a command's report to ``-o FILE``: a folder that is missing, a full disk or a
read-only file system is a one-line message and exit 3, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orch.cli import exitcodes


def write_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8), or say why not on stderr and exit 3."""
    try:
        path.write_text(text, "utf-8")
    except OSError as exc:
        why = exc.strerror or str(exc)
        if not path.parent.is_dir():
            why = f"no folder {path.parent}"
        click.echo(f"orch: cannot write {path}: {why}", err=True)
        sys.exit(exitcodes.CONFIG)
