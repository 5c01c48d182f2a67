"""``orch deploy / undeploy / run / plan / graph``: flags in, one call to ``orch.deployments``,
progress and results out, errors mapped to exit codes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.complete import deployment_names, input_files

STATE_DIR_HELP = "Folder of orch's state (default: $ORCH_STATE_DIR, else ./.orch)."


def state_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="ORCH_STATE_DIR",
        default=".orch",
        show_envvar=True,
        help=STATE_DIR_HELP,
    )(func)


def _engine_flags(*skip: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The flags of the commands that run operations, less those named in ``skip`` (by
    parameter name): a command offers only the flags it uses."""
    options = {
        "workers": click.option(
            "-w", "--workers", type=click.IntRange(1, 256), default=4, show_default=True,
            help="Operations run at the same time."),
        "fail_fast": click.option(
            "--fail-fast", is_flag=True,
            help="Stop everything at the first failure (default: independent branches go on)."),
        "default_timeout": click.option(
            "--timeout", "default_timeout", type=click.FloatRange(min=0.001),
            help="Seconds an operation may run when its blueprint sets no timeout."),
        "known_hosts": click.option(
            "--known-hosts", "known_hosts", multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="known_hosts file for SSH host keys (repeatable; default ~/.ssh/known_hosts)."),
        "accept_new_host_keys": click.option(
            "--accept-new-host-keys", is_flag=True,
            help="Trust SSH hosts seen for the first time and remember their keys (changed "
            "keys are always refused)."),
        "poll_interval": click.option(
            "--poll-interval", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
            help="Seconds between two checks of a running job, for job nodes that set no "
            "poll_interval (or Yorc's monitoring_time_interval)."),
        "cancel_jobs_on_interrupt": click.option(
            "--cancel-jobs", "cancel_jobs_on_interrupt", is_flag=True,
            help="On Ctrl-C, also cancel the jobs still running (default: they go on, and "
            "running the same command again watches them again)."),
        "force_rebuild": click.option(
            "--force-rebuild", is_flag=True,
            help="Build container images again even when an identical one (same content "
            "hash) was built or placed before."),
        "sites": click.option(
            "--site", "sites", multiple=True, metavar="[NODE=]SITE",
            help="The site of sites.yaml an execution environment node (eFlows4HPC's "
            "AbstractEnvironment) is, NODE=SITE or SITE for all (default: the only site)."),
        "registry": click.option(
            "--registry", metavar="PATH|URL",
            help="eFlows4HPC workflow registry of image recipes (<workflow>/<step_id>/), a "
            "folder or a git URL (default: the site's registry in sites.yaml, ORCH_REGISTRY)."),
                "survivors": click.option(
            "--survivors", type=click.Choice(["wait", "stop"]), default="wait",
            show_default=True,
            help="Operations an orch that was killed left running: wait for them to end, or "
            "stop them, before they run again (never two copies at once)."),
        "fmt": click.option(
            "-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
            show_default=True,
            help="text: live view or plain lines on stderr; json: one event per line on stdout."),
        "state_dir": state_dir_option,
    }  # fmt: skip
    unknown = set(skip) - set(options)
    if unknown:
        raise ValueError(f"no such engine flag: {', '.join(sorted(unknown))}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name, option in reversed(options.items()):
            if name not in skip:
                func = option(func)
        return func

    return decorate


_run_options = _engine_flags()
"""deploy and run: a workflow may submit jobs (watched, cancelled on Ctrl-C) and build images."""
_undeploy_options = _engine_flags("poll_interval", "cancel_jobs_on_interrupt", "force_rebuild")
"""undeploy cancels running jobs and deletes: it submits no job and builds no image."""
_cancel_options = _engine_flags(
    "fail_fast", "poll_interval", "cancel_jobs_on_interrupt", "force_rebuild", "survivors"
)
"""cancel runs each running job's cancel operation, all of them whatever one's outcome."""


def _engine_options(
    workers: int,
    default_timeout: float | None,
    known_hosts: tuple[Path, ...],
    accept_new_host_keys: bool,
    fail_fast: bool = False,
    poll_interval: float = 5.0,
    cancel_jobs_on_interrupt: bool = False,
    force_rebuild: bool = False,
    survivors: str = "wait",
    sites: tuple[str, ...] = (),
    registry: str | None = None,
) -> Any:
    from orch.engine.runner import EngineOptions
    from orch.transport.base import HostKeyPolicy

    policy = HostKeyPolicy.of(known_hosts, accept_new_host_keys)
    return EngineOptions(
        workers=workers,
        fail_fast=fail_fast,
        default_timeout=default_timeout,
        host_keys=policy,
        poll_interval=poll_interval,
        cancel_jobs_on_interrupt=cancel_jobs_on_interrupt,
        force_rebuild=force_rebuild,
        survivors=survivors,
        environment_sites=_environment_sites(sites),
        registry=_registry(registry),
    )


def _registry(value: str | None) -> str | None:
    """A folder made absolute (the engine may run elsewhere later); a URL as given."""
    if value is None or "://" in value or value.startswith("git@"):
        return value
    return str(Path(value).expanduser().resolve())


def _environment_sites(specs: tuple[str, ...]) -> dict[str, str]:
    """``--site NODE=SITE`` and ``--site SITE`` (key ''): which site each environment is."""
    bound: dict[str, str] = {}
    for spec in specs:
        node, _, site = spec.rpartition("=")
        if not site:
            raise click.BadParameter(f"'{spec}': give SITE or NODE=SITE", param_hint="--site")
        bound[node] = site
    return bound


def _open_store(state_dir: Path, *, create: bool = True) -> Any:
    from orch.state import StateError, Store

    try:
        return Store.open(state_dir, create=create)
    except StateError as exc:
        click.echo(f"orch: {exc}", err=True)
        sys.exit(exitcodes.CONFIG)


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map the use cases' exceptions to messages and exit codes: never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orch.deployments import BlueprintProblems, DeploymentError, Drifted
        from orch.engine.runner import EngineError
        from orch.plan import WorkflowError
        from orch.state import DeploymentBusy, StateError

        try:
            return func(*args, **kwargs)
        except BlueprintProblems as exc:
            _show_diagnostics(exc.diagnostics, kwargs.get("fmt", "text"))
            sys.exit(exitcodes.FINDINGS)
        except Drifted as exc:
            _show_drift(exc, kwargs.get("fmt", "text"))
            sys.exit(exitcodes.DRIFTED)
        except DeploymentBusy as exc:
            click.echo(f"orch: {exc}", err=True)
            sys.exit(exitcodes.BUSY)
        except (DeploymentError, WorkflowError, EngineError, StateError) as exc:
            click.echo(f"orch: {exc}", err=True)
            sys.exit(exitcodes.CONFIG)

    return wrapper


def _show_drift(exc: Any, fmt: str) -> None:
    from orch.cli.diffview import diff_json, diff_text

    if fmt == "json":
        click.echo(diff_json(exc.name, exc.diff))
    click.echo(diff_text(exc.name, exc.diff), nl=False, err=True)
    click.echo(
        f"orch: nothing ran. `orch deploy ... --update` applies these changes; deploy without "
        f"the changed -i values (or with the blueprint as deployed) to go on as it is; "
        f"`orch diff {exc.name}` shows this again",
        err=True,
    )


def _show_diagnostics(diagnostics: list[Any], fmt: str) -> None:
    from orch.cli.render import render

    files = sorted({d.location.file for d in diagnostics})
    if fmt == "json":
        click.echo(render("json", diagnostics, files), nl=False)
    else:
        use_color = click.get_current_context().obj.color_for(sys.stderr)
        click.echo(render("text", diagnostics, files, color=use_color), nl=False, err=True,
                   color=use_color)  # fmt: skip


def _listener(fmt: str) -> Any:
    from orch.cli.progress import make_listener

    settings = click.get_current_context().obj
    return make_listener(fmt, color=settings.color_for(sys.stderr), verbosity=settings.verbosity)


def _run_and_finish(fmt: str, verb: str, run: Callable[[Any], Any]) -> None:
    """Run deploy, undeploy or a workflow (``run(listener)``) with the live view, closed
    whatever happens, then report its outcome."""
    listener = _listener(fmt)
    try:
        outcome = run(listener)
    finally:
        listener.close()
    _finish(outcome, fmt, verb)


def _finish(outcome: Any, fmt: str, verb: str) -> None:
    """The closing report: failures on stderr, the result (json) on stdout, the exit code."""
    summary = outcome.summary
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "version": 1,
                    "kind": "result",
                    "deployment": outcome.name,
                    "status": summary.status,
                    "deployment_status": outcome.status,
                    "outputs": outcome.outputs,
                    "failures": [f.__dict__ for f in summary.failures],
                },
                default=str,
            )
        )
    else:
        for failure in summary.failures:  # their output's last lines were shown as they failed
            rc = f" (exit status {failure.rc})" if failure.rc is not None else ""
            message = failure.message
            if message.startswith(f"exit status {failure.rc}"):
                message = message[len(f"exit status {failure.rc}") :].strip(" ;") or message
            click.echo(f"orch: {failure.title} failed on {failure.host}{rc}: {message}", err=True)
        counts = (
            f"{summary.succeeded} operation(s) ok, {summary.failed} failed, "
            f"{summary.skipped} skipped, {summary.done_before} already done"
        )
        click.echo(
            f"orch: {verb} '{outcome.name}': {summary.status} in {summary.elapsed:.2f}s; {counts}",
            err=True,
        )
        if summary.status == "ok" and outcome.outputs:
            for name, value in outcome.outputs.items():
                click.echo(f"  {name}: {_show(value)}", err=True)
        if summary.status == "failed":
            click.echo(
                f"orch: fix the cause and run the same command again to resume; "
                f"`orch status {outcome.name}` and `orch logs {outcome.name}` show details",
                err=True,
            )
    if summary.status == "cancelled":
        sys.exit(exitcodes.INTERRUPTED)
    if summary.status != "ok":
        sys.exit(exitcodes.OPERATION_FAILED)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _inputs_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-i",
        "--inputs",
        "input_specs",
        multiple=True,
        metavar="FILE|NAME=VALUE",
        shell_complete=input_files,
        help="Inputs: a YAML file of name: value, or one name=value (repeatable).",
    )(func)


# ---------------------------------------------------------------------------- commands
@click.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@_inputs_option
@click.option("-n", "--name", shell_complete=deployment_names,
              help="Deployment name (default: the blueprint's template_name, else its file or "
              "folder name).")  # fmt: skip
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(path_type=Path),
              help="Folder of type libraries for 'name:version' imports (repeatable).")  # fmt: skip
@click.option("--update", is_flag=True,
              help="When the deployment differs from BLUEPRINT and its inputs (see `orch diff`), "
              "apply the change: replace changed nodes, run changed operations again, create "
              "added nodes, delete removed ones.")  # fmt: skip
@_run_options
@_handle_errors
def deploy(
    blueprint: Path,
    input_specs: tuple[str, ...],
    name: str | None,
    catalogs: tuple[Path, ...],
    update: bool,
    fmt: str,
    state_dir: Path,
    **run: Any,
) -> None:
    """Deploy BLUEPRINT: validate it and its inputs, then run the deploy workflow.

    Run the same command again after a failure or an interruption: it resumes, running only
    what is not done yet, with the inputs it was deployed with (-i changes them). When the
    blueprint or the inputs changed since, nothing runs until --update. Exit status: 0
    deployed, 1 blueprint or input errors, 4 an operation failed, 5 the deployment is busy,
    6 it differs from BLUEPRINT (use --update), 130 interrupted.
    """
    from orch import deployments

    prepared = deployments.prepare(
        str(blueprint), list(input_specs), [str(c) for c in catalogs], missing_ok=True
    )
    from orch.cli.secrets import check_secrets

    check_secrets(prepared.model, prepared.inputs)  # a missing get_secret value: nothing runs
    deployment_name = deployments.deployment_name(prepared, name)
    store = _open_store(state_dir)

    def show_update(diff: Any) -> None:
        from orch.cli.diffview import diff_json, diff_text

        if fmt == "json":
            click.echo(diff_json(deployment_name, diff))
        else:
            click.echo(diff_text(deployment_name, diff), nl=False, err=True)

    _run_and_finish(fmt, "deploy", lambda listener: deployments.deploy(
        store, prepared, deployment_name, _engine_options(**run), listener,
        update=update, show_update=show_update,
    ))  # fmt: skip


@click.command("diff")
@click.argument("name", shell_complete=deployment_names)
@click.argument("blueprint", required=False, type=click.Path(path_type=Path))
@_inputs_option
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(path_type=Path),
              help="Folder of type libraries for 'name:version' imports (repeatable).")  # fmt: skip
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
@state_dir_option
@_handle_errors
def diff(
    name: str,
    blueprint: Path | None,
    input_specs: tuple[str, ...],
    catalogs: tuple[Path, ...],
    fmt: str,
    state_dir: Path,
) -> None:
    """Show how deployment NAME differs from BLUEPRINT (default: the file it was deployed
    from, as it is now) with its inputs: inputs, nodes added or removed, properties and
    operations changed, and what `orch deploy --update` would do about each.

    Exit status: 0 nothing deployed would change, 6 it differs, 1 blueprint errors.
    """
    from orch import deployments
    from orch.cli.diffview import diff_json, diff_text

    store = _open_store(state_dir, create=False)
    difference = deployments.difference(
        store, name, str(blueprint) if blueprint else None, list(input_specs),
        [str(c) for c in catalogs],
    )  # fmt: skip
    if fmt == "json":
        click.echo(diff_json(name, difference))
    else:
        click.echo(diff_text(name, difference), nl=False)
    if difference.drifted:
        sys.exit(exitcodes.DRIFTED)


@click.command()
@click.argument("name", shell_complete=deployment_names)
@_inputs_option
@_undeploy_options
@_handle_errors
def undeploy(
    name: str, input_specs: tuple[str, ...], fmt: str, state_dir: Path, **run: Any
) -> None:
    """Undeploy NAME: stop and delete what its deploy created, and only that.

    Uses the blueprint and inputs as deployed (secret inputs must be given again with -i).
    """
    from orch import deployments

    store = _open_store(state_dir)
    _run_and_finish(fmt, "undeploy", lambda listener: deployments.undeploy(
        store, name, _engine_options(**run), listener, list(input_specs)
    ))  # fmt: skip


@click.command("run")
@click.argument("workflow")
@click.option("-n", "--name", shell_complete=deployment_names,
              help="The deployment (default: the only one in the state folder).")  # fmt: skip
@_inputs_option
@_run_options
@_handle_errors
def run_workflow(
    workflow: str,
    name: str | None,
    input_specs: tuple[str, ...],
    fmt: str,
    state_dir: Path,
    **run: Any,
) -> None:
    """Run WORKFLOW, an imperative workflow of a deployment's blueprint (-i: its inputs)."""
    from orch import deployments

    store = _open_store(state_dir)
    if name is None:
        names = [d.name for d in store.deployments()]
        if len(names) != 1:
            raise deployments.DeploymentError(
                "say which deployment with -n NAME (deployments: "
                + (", ".join(names) or "none")
                + ")"
            )
        name = names[0]
    from orch.cli.secrets import check_secrets

    store.check_health()  # lost state is said as such, before "no deployment"
    model, inputs, _secret_names = deployments.stored(store, name, list(input_specs))
    from orch.plan import workflow_plan

    runs = {step.node for step in workflow_plan(model, workflow).steps.values()}
    check_secrets(model, inputs, f"run {workflow}", nodes=runs)
    found = name
    _run_and_finish(fmt, f"run {workflow} on", lambda listener: deployments.run_workflow(
        store, found, workflow, _engine_options(**run), listener, list(input_specs)
    ))  # fmt: skip


@click.command()
@click.argument("name", shell_complete=deployment_names)
@_inputs_option
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=600,
              show_default=True,
              help="Seconds to wait for the orch process running NAME to stop.")  # fmt: skip
@_cancel_options
@_handle_errors
def cancel(
    name: str, input_specs: tuple[str, ...], wait_seconds: float, fmt: str, state_dir: Path,
    **run: Any,
) -> None:  # fmt: skip
    """Cancel NAME's running jobs (their cancel operation), and stop the orch process running
    NAME, if any: it cancels them itself and ends with status 130."""
    from orch import deployments
    from orch.engine.interrupts import CANCEL_SIGNAL
    from orch.state import DeploymentBusy

    store = _open_store(state_dir)
    deployments.stored(store, name)  # an unknown name is an error, before anything else
    deadline = time.monotonic() + wait_seconds
    asked: int | None = None
    while True:
        try:
            lock = store.lock(name, "cancel")
            break
        except DeploymentBusy as busy:
            if busy.pid is None or time.monotonic() > deadline:
                raise
            if asked != busy.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(busy.pid, CANCEL_SIGNAL)
                asked = busy.pid
                click.echo(f"orch: asked '{busy.action}' (pid {busy.pid}) to stop and cancel "
                           f"the jobs of '{name}'", err=True)  # fmt: skip
            time.sleep(0.1)
    listener = _listener(fmt)
    try:
        with lock:
            outcome = deployments.cancel_jobs(
                store, name, _engine_options(**run), listener, list(input_specs)
            )
    finally:
        listener.close()
    if outcome is None:
        what = "its jobs were cancelled" if asked else "no job of it is running"
        click.echo(f"orch: cancel '{name}': {what}", err=True)
        if fmt == "json":
            click.echo(json.dumps({"version": 1, "kind": "result", "deployment": name,
                                   "status": "ok", "cancelled": 0}))  # fmt: skip
        return
    _finish(outcome, fmt, "cancel the jobs of")


def _plan_arguments(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """BLUEPRINT, its inputs, and which plan: deploy (default), --undeploy or --workflow."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        workflow_help = f"{what} the plan of this imperative workflow."
        func = click.option("--workflow", help=workflow_help)(func)
        func = click.option("--undeploy", "action", flag_value="undeploy",
                            help=f"{what} the undeploy plan.")(func)  # fmt: skip
        func = _catalog_option(func)
        func = _inputs_option(func)
        return click.argument("blueprint", type=click.Path(path_type=Path))(func)

    return decorate


def _catalog_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--catalog", "catalogs", multiple=True, type=click.Path(path_type=Path),
        help="Folder of type libraries for 'name:version' imports (repeatable; also "
        "ORCH_CATALOG).",
    )(func)  # fmt: skip


def _plan_of(
    blueprint: Path, input_specs: tuple[str, ...], action: str | None, workflow: str | None,
    catalogs: tuple[Path, ...] = (),
) -> Any:  # fmt: skip
    from orch import deployments

    for folder in catalogs:
        if not folder.is_dir():
            raise deployments.DeploymentError(f"catalog folder not found: {folder}")
    prepared = deployments.prepare(str(blueprint), list(input_specs), [str(c) for c in catalogs])
    return deployments.plan_for(prepared.model, action or "deploy", workflow), prepared.model


@click.command()
@_plan_arguments("Show")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
@_handle_errors
def plan(
    blueprint: Path, input_specs: tuple[str, ...], catalogs: tuple[Path, ...],
    action: str | None, workflow: str | None, fmt: str,
) -> None:  # fmt: skip
    """Show what deploying BLUEPRINT would run, in order, and what runs concurrently."""
    from orch.cli.views import plan_view

    the_plan, model = _plan_of(blueprint, input_specs, action, workflow, catalogs)
    click.echo(plan_view(the_plan, fmt, model), nl=False)


@click.command()
@_plan_arguments("Graph")
@click.option("-f", "--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot",
              show_default=True)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to a file instead of stdout.")  # fmt: skip
@_handle_errors
def graph(
    blueprint: Path, input_specs: tuple[str, ...], catalogs: tuple[Path, ...],
    action: str | None, workflow: str | None, fmt: str, output: Path | None,
) -> None:  # fmt: skip
    """Write the plan of BLUEPRINT as a graph: Graphviz DOT or Mermaid."""
    from orch.cli.output import write_file
    from orch.cli.views import graph_dot, graph_mermaid

    the_plan, _model = _plan_of(blueprint, input_specs, action, workflow, catalogs)
    text = graph_dot(the_plan) if fmt == "dot" else graph_mermaid(the_plan)
    if output is not None:
        write_file(output, text)
    else:
        click.echo(text, nl=False)
