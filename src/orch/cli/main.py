"""The ``orch`` command group.

Sub-commands are imported only when they run, so ``orch --help`` and shell completion stay
instant: the table below holds each command's module and one-line help.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from orch import __version__
from orch.cli import exitcodes

# name -> (module, attribute, short help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("orch.cli.validate", "validate", "Check blueprints and report every problem."),
    "schema": ("orch.cli.schema", "schema", "Print the TOSCA grammar as JSON Schema."),
    "plan": ("orch.cli.deploy", "plan", "Show the steps a deploy would run, in order."),
    "graph": ("orch.cli.deploy", "graph", "Write the plan as a DOT or Mermaid graph."),
    "deploy": ("orch.cli.deploy", "deploy", "Deploy a blueprint (run it again to resume)."),
    "undeploy": ("orch.cli.deploy", "undeploy", "Undo what a deployment deployed."),
    "run": ("orch.cli.deploy", "run_workflow", "Run a blueprint's imperative workflow."),
    "cancel": ("orch.cli.deploy", "cancel", "Cancel a deployment's running jobs."),
    "list": ("orch.cli.inspect", "list_deployments", "List the deployments."),
    "status": ("orch.cli.inspect", "status", "Show a deployment's instances and operations."),
    "outputs": ("orch.cli.inspect", "outputs", "Print a deployment's outputs."),
    "logs": ("orch.cli.inspect", "logs", "Print (or follow) a deployment's operation logs."),
    "sites": ("orch.cli.sites", "sites", "List the HPC sites of sites.yaml; check them."),
    "credentials": ("orch.cli.sites", "credentials", "Manage SSH keys named by a token."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        if ctx.resilient_parsing or _only_listing(ctx):
            return click.Command(cmd_name, short_help=spec[2], help=spec[2])
        module = importlib.import_module(spec[0])
        return getattr(module, spec[1])


def _only_listing(ctx: click.Context) -> bool:
    """True while click formats the group's --help: no need to import the commands."""
    return bool(ctx.meta.get("orch.listing"))


class Settings:
    """Global options, handed to commands through ``ctx.obj``."""

    def __init__(self, verbosity: int, color: str):
        self.verbosity = verbosity
        self.color_choice = color

    def color_for(self, stream: Any) -> bool:
        """Whether to colour what goes to ``stream`` (always, never, or auto: a terminal)."""
        return use_color(self.color_choice, stream)


def use_color(choice: str, stream: Any) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="orch")
@click.option("-v", "--verbose", count=True, help="Say more (repeatable).")
@click.option("-q", "--quiet", count=True, help="Say less: only errors.")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour human output (NO_COLOR is honoured with auto).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, color: str) -> None:
    """orch: validate and deploy TOSCA blueprints of HPC workflows.

    \b
    Shell completion (bash; zsh and fish alike):
      eval "$(_ORCH_COMPLETE=bash_source orch)"
    """
    ctx.obj = Settings(verbose - quiet, color)


_format_help = cli.format_help


def _listing_help(ctx: click.Context, formatter: click.HelpFormatter) -> None:
    ctx.meta["orch.listing"] = True
    _format_help(ctx, formatter)


cli.format_help = _listing_help  # type: ignore[method-assign]


def main() -> None:
    """Console entry point: exits without tearing down the interpreter's heap.

    Freeing a large blueprint's objects one by one at exit costs as much as checking them; the
    OS reclaims the memory at once. Streams are flushed first.
    """
    code = _run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def _run() -> int:
    """Run the group: click's own errors keep code 2; anything unexpected is a bug (70)."""
    try:
        _main()
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="orch")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(exitcodes.OK)
    except SystemExit:
        raise
    except Exception as exc:  # pragma: no cover - the last line of defence
        import traceback

        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        click.echo(f"orch: internal error: {detail}", err=True)
        click.echo(
            "This is a bug in orch; please report it with the command you ran"
            " (set ORCH_DEBUG=1 to see the traceback).",
            err=True,
        )
        if os.environ.get("ORCH_DEBUG"):
            traceback.print_exc()
        sys.exit(exitcodes.INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    main()
