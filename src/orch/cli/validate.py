"""``orch validate``: report every problem of one or more blueprints."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import click

from orch.cli import exitcodes
from orch.cli.render import FORMATS, render
from orch.tosca.context import INTERNAL_RULE
from orch.tosca.diagnostics import Diagnostic, Severity


@click.command()
@click.argument("blueprints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Output format (machine formats go to stdout).",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of type libraries for 'name:version' imports (repeatable; also ORCH_CATALOG).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to a file instead of stdout.",
)
@click.pass_obj
def validate(
    obj: object,
    blueprints: tuple[Path, ...],
    fmt: str,
    strict: bool,
    catalogs: tuple[Path, ...],
    output: Path | None,
) -> None:
    """Check BLUEPRINTS (YAML files or CSARs) and report every problem with file:line:col.

    Exit status: 0 clean, 1 findings, 2 usage error, 3 configuration error.
    """
    from orch.tosca.imports import default_catalog
    from orch.tosca.validator import validate as run_validation

    for folder in catalogs:
        if not folder.exists():
            click.echo(f"orch: catalog folder not found: {folder}", err=True)
            sys.exit(exitcodes.CONFIG)
    catalog = default_catalog(catalogs)
    diagnostics: list[Diagnostic] = []
    sources: dict[str, object] = {}
    for index, blueprint in enumerate(blueprints):
        if index == 1:
            # start-up left the collector off for one blueprint's short life; the garbage of
            # many would pile up
            gc.enable()
        result = run_validation(blueprint, catalog=catalog)
        diagnostics.extend(result.diagnostics)
        for loaded in result.files:
            sources[loaded.path] = loaded
    verbosity = getattr(obj, "verbosity", 0)
    if verbosity < 0:
        diagnostics = [d for d in diagnostics if d.severity is Severity.ERROR]
    files = [str(b) for b in blueprints]
    if fmt == "text":
        stream = sys.stdout if output is None else None
        is_tty = bool(stream and stream.isatty())
        color = output is None and hasattr(obj, "color_for") and obj.color_for(sys.stdout)

        def source_line(file: str, line: int) -> str | None:
            loaded = sources.get(file)
            return loaded.line_text(line) if loaded is not None else None  # type: ignore[attr-defined]

        report = render(
            "text",
            diagnostics,
            files,
            color=color,
            source_line=source_line if is_tty or os.environ.get("ORCH_SNIPPETS") else None,
        )
    else:
        color = False
        report = render(fmt, diagnostics, files)
    if output is not None:
        from orch.cli.output import write_file

        write_file(output, report)
    else:
        click.echo(report, nl=False, color=color)  # click strips colour codes unless told
    if any(d.rule == INTERNAL_RULE for d in diagnostics):
        sys.exit(exitcodes.INTERNAL)
    failing = Severity.WARNING if strict else Severity.ERROR
    if any(d.severity >= failing for d in diagnostics):
        sys.exit(exitcodes.FINDINGS)
