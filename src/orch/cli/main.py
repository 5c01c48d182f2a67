"""The ``orch`` command group.

Sub-commands are imported only when they run (or when their options and arguments are
completed), so ``orch --help`` and completing a command's name stay instant: the table below
holds each command's module and one-line help.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import os
import signal
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
    "diff": ("orch.cli.deploy", "diff", "Show how a deployment differs from its blueprint."),
    "undeploy": ("orch.cli.deploy", "undeploy", "Undo what a deployment deployed."),
    "run": ("orch.cli.deploy", "run_workflow", "Run a blueprint's imperative workflow."),
    "cancel": ("orch.cli.deploy", "cancel", "Cancel a deployment's running jobs."),
    "list": ("orch.cli.inspect", "list_deployments", "List the deployments."),
    "status": ("orch.cli.inspect", "status", "Show a deployment's instances and operations."),
    "connect": ("orch.cli.connect", "connect", "Forward a local port to a running application."),
    "outputs": ("orch.cli.inspect", "outputs", "Print a deployment's outputs."),
    "logs": ("orch.cli.inspect", "logs", "Print (or follow) a deployment's operation logs."),
    "sites": ("orch.cli.sites", "sites", "List the HPC sites of sites.yaml; check them."),
    "credentials": ("orch.cli.sites", "credentials", "Manage SSH keys named by a token."),
    "secrets": ("orch.cli.secrets", "secrets", "Store values for get_secret (never shown)."),
    "serve": ("orch.cli.serve", "serve", "Serve published workflows over a REST API."),
    "publish": ("orch.cli.serve", "publish", "Offer a deployment's workflow to orch serve."),
    "unpublish": ("orch.cli.serve", "unpublish", "Stop offering a published workflow."),
    "users": ("orch.cli.serve", "users", "Manage the users of orch serve."),
    "tokens": ("orch.cli.serve", "tokens", "Create and revoke orch serve users' tokens."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use.

    ``orch --help`` and completing a command's name read the table above and import nothing;
    running a command, or completing its options and arguments, imports that command only."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        if _only_listing(ctx):
            return click.Command(cmd_name, short_help=spec[2], help=spec[2])
        module = importlib.import_module(spec[0])
        if cmd_name not in _WITHOUT_COLLECTOR:
            _resume_collector()  # start-up is over: the command's objects may form cycles
        return getattr(module, spec[1])

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, but a mistyped command name gets the nearest names as a hint."""
        name = args[0] if args else ""
        if name not in COMMANDS and not name.startswith("-") and not ctx.resilient_parsing:
            near = nearest_commands(name)
            if near:
                ctx.fail(f"No such command {name!r}. Did you mean {' or '.join(map(repr, near))}?")
        return super().resolve_command(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """Command names (with their help, for zsh and fish) from the table, then options."""
        from click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=spec[2])
            for name, spec in sorted(COMMANDS.items())
            if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)


def nearest_commands(name: str) -> list[str]:
    """The command names closest to a mistyped ``name``: those it begins, else the best
    difflib matches (ties all shown)."""
    starting = [c for c in sorted(COMMANDS) if name and c.startswith(name)]
    if starting:
        return starting[:3]
    import difflib  # only for a typo: every other run is spared its import

    scored = [(difflib.SequenceMatcher(None, name, c).ratio(), c) for c in sorted(COMMANDS)]
    best = max((ratio for ratio, _ in scored), default=0.0)
    if best < 0.6:
        return []
    return [c for ratio, c in scored if ratio == best]


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
    OS reclaims the memory at once. Streams are flushed first: a full disk under stdout is a
    message and status 3, never a traceback. Ctrl-C at any point ends with status 130.
    """
    _pause_collector()
    try:
        code = _run()
        _quiet_interrupts()
        code = _flush_streams(code)
    except KeyboardInterrupt:
        code = exitcodes.INTERRUPTED
    os._exit(code)


_collector_paused = False
_WITHOUT_COLLECTOR = frozenset({"validate"})
"""Commands that check, print and exit: what they allocate lives until ``os._exit``, so the
collector stays off from start-up to the end (turned back on, it would first scan everything
the command built)."""


def _pause_collector() -> None:
    """No cycle collection while the command line starts: parsing it and importing the
    command create only objects that live until exit (modules, classes, functions), which the
    collector would scan again and again to free nothing. The command turns it back on."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


def _resume_collector() -> None:
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.enable()


def _quiet_interrupts() -> None:
    """From now on Ctrl-C exits 130 at once (the command is over: nothing to clean up)."""
    from orch.cli import quiet_interrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, quiet_interrupt)


def _command_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the command to handle (the engine installs
    its own handlers while it runs); only where ``orch.cli`` had made it quiet."""
    from orch.cli import quiet_interrupt

    if signal.getsignal(signal.SIGINT) is quiet_interrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _flush_streams(code: int) -> int:
    """Flush stdout and stderr; output that cannot be written is exit 3 if all else was well."""
    try:
        if sys.stdout is not None:  # None: started with stdout closed
            sys.stdout.flush()
    except BrokenPipeError:
        pass
    except OSError as exc:
        if code == exitcodes.OK:  # else the command has said what went wrong already
            _output_error(exc, "standard output")
            code = exitcodes.CONFIG
    with contextlib.suppress(OSError, AttributeError):
        sys.stderr.flush()
    return code


def _run() -> int:
    """Run the group: click's own errors keep code 2; anything unexpected is a bug (70)."""
    _command_interrupts()
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
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED
    return 0


OUTPUT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.ENXIO}
)
"""Writing failed because of the machine (a full disk, a quota, a gone device): exit 3."""


def _output_error(exc: OSError, what: str) -> None:
    """One line on stderr for output that could not be written (stderr itself may be gone)."""
    with contextlib.suppress(OSError):
        click.echo(f"orch: cannot write {what}: {exc.strerror or exc}", err=True)


def _written_to(exc: OSError) -> str:
    """What a failed write was writing to: the file it names, else the standard stream that
    ``click.echo`` (or a ``file=`` argument) was writing when it failed."""
    if exc.filename:
        return str(exc.filename)
    names = {1: "standard output", 2: "standard error"}
    tb = exc.__traceback__
    while tb is not None:
        stream = tb.tb_frame.f_locals.get("file")
        try:
            fd = stream.fileno() if stream is not None else None
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd in names:
            return names[fd]
        tb = tb.tb_next
    return "the output"


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
        sys.exit(exitcodes.INTERRUPTED)
    except KeyboardInterrupt:
        sys.exit(exitcodes.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(exitcodes.OK)
    except SystemExit:
        raise
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            _internal_error(exc)
        _output_error(exc, _written_to(exc))
        sys.exit(exitcodes.CONFIG)
    except Exception as exc:  # pragma: no cover - the last line of defence
        _internal_error(exc)


def _interrupted(exc: BaseException) -> bool:
    """Whether a Ctrl-C is behind ``exc``: Python may wrap a KeyboardInterrupt that struck
    while a module was being imported (a RuntimeError raised while creating a dataclass)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _internal_error(exc: Exception) -> None:
    """A bug in orch: say so, how to report it, and exit 70. A state folder that cannot be
    used is not a bug: it is said as it is, exit 3, whichever command met it."""
    if _interrupted(exc):
        sys.exit(exitcodes.INTERRUPTED)
    from orch.state.lock import StateError

    if isinstance(exc, StateError):
        click.echo(f"orch: {exc}", err=True)
        sys.exit(exitcodes.CONFIG)
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
