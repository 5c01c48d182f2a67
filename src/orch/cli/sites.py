"""``orch sites`` (list, check) and ``orch credentials`` (generate, add, list, remove,
public-key): flags in, one call to ``orch.sites``, text or JSON out, errors to exit codes.

Nothing here ever prints a private key: credentials are shown by token, type, fingerprint and
public key only.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from orch.cli import exitcodes
from orch.cli.complete import site_names

SITES_HELP = (
    "sites.yaml to use (default: $ORCH_SITES, else ./sites.yaml, else "
    "$XDG_CONFIG_HOME/orch/sites.yaml)."
)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, without trailing blanks."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in (header, *rows)
    )


def _fail(message: str, code: int = exitcodes.CONFIG) -> None:
    click.echo(f"orch: {message}", err=True)
    sys.exit(code)


def _format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for programs (on stdout).",
    )(func)


def _sites_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--sites",
        "sites_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=SITES_HELP,
    )(func)


def _load(sites_file: Path | None) -> Any:
    from orch.sites.config import SitesError, load_sites

    try:
        return load_sites(sites_file)
    except SitesError as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        sys.exit(exitcodes.CONFIG)


def _credential_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A CredentialError is a one-line message and exit 3, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orch.sites.credentials import CredentialError

        try:
            return func(*args, **kwargs)
        except CredentialError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(
                f"cannot write the credential store: {exc.strerror or exc} ({exc.filename or ''})"
            )

    return wrapper


# -- orch sites ------------------------------------------------------------------------------


@click.group(
    "sites",
    epilog="""\b
sites.yaml:
  sites:
    hpc1:
      host: login.hpc1.example.org   # the login node
      port: 22
      user: jdoe
      credentials: Qm9fZ3kX1vY8c2LrT0aBn4Ew  # `orch credentials generate` (or identity_file)
      scheduler: slurm               # or sge, none
      partition: debug
      account: proj42
      qos: normal
      modules: [gcc/12.2.0, openmpi/4.1.5]
      work_dir: $SCRATCH/orch-work   # default ~/orch-work
      container_runtime: apptainer   # or podman, none
      environment: {OMP_NUM_THREADS: "8"}
      known_hosts: ~/.ssh/known_hosts_hpc1
""",
)
def sites() -> None:
    """The HPC sites of sites.yaml: list them, check what they offer."""


@sites.command("list")
@_sites_option
@_format_option
def list_sites(sites_file: Path | None, fmt: str) -> None:
    """List the sites of sites.yaml."""
    book = _load(sites_file)
    if fmt == "json":
        click.echo(
            _json({"file": str(book.path), "sites": [_site_dict(s) for s in book]}), nl=False
        )
        return
    click.echo(f"sites from {book.path}", err=True)
    rows = [
        [
            s.name,
            s.login(),
            s.scheduler,
            s.partition or "-",
            s.account or "-",
            s.container_runtime or "-",
            _auth(s),
        ]
        for s in book
    ]
    header = ["NAME", "LOGIN", "SCHEDULER", "PARTITION", "ACCOUNT", "CONTAINERS", "AUTH"]
    click.echo(_columns(header, rows), nl=False)


def _auth(site: Any) -> str:
    if site.credentials:
        return f"token {site.credentials}"
    if site.identity_file:
        return f"key {site.identity_file}"
    return "agent/~/.ssh"


def _site_dict(site: Any) -> dict[str, Any]:
    return {
        "name": site.name,
        "host": site.address,
        "port": site.port,
        "user": site.user,
        "credentials": site.credentials,
        "identity_file": site.identity_file,
        "scheduler": site.scheduler,
        "partition": site.partition,
        "account": site.account,
        "qos": site.qos,
        "modules": list(site.modules),
        "work_dir": site.work_dir,
        "container_runtime": site.container_runtime,
        "environment": site.environment,
        "known_hosts": site.known_hosts,
    }


@sites.command("check", short_help="Log in to sites and report what they offer.")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=site_names)
@click.option(
    "-b",
    "--blueprint",
    type=click.Path(path_type=Path),
    help="Check what this blueprint needs on the sites it runs on (its commands, modules, "
    "partitions, enqueue_compss, image builders and runtimes), here too.",
)
@click.option(
    "-i",
    "--inputs",
    "input_specs",
    multiple=True,
    metavar="FILE|NAME=VALUE",
    help="The blueprint's inputs, as for deploy (repeatable).",
)
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of type libraries for the blueprint's 'name:version' imports.",
)
@_sites_option
@_format_option
@click.option(
    "--known-hosts",
    "known_hosts",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="known_hosts file for SSH host keys (repeatable; default: the site's "
    "known_hosts, else ~/.ssh/known_hosts).",
)
@click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Trust hosts seen for the first time and remember their keys "
    "(changed keys are always refused).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the SSH connection.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds the checks may take on the site.",
)
def check(
    names: tuple[str, ...],
    blueprint: Path | None,
    input_specs: tuple[str, ...],
    catalogs: tuple[Path, ...],
    sites_file: Path | None,
    fmt: str,
    known_hosts: tuple[Path, ...],
    accept_new_host_keys: bool,
    connect_timeout: float,
    timeout: float,
) -> None:
    """Log in to sites (all when no NAME is given) and report what they offer.

    One SSH round trip per site: host name, Slurm version and partitions (on an SGE site:
    SGE's version, queues and parallel environments), the default partition (SGE: a queue),
    account and QoS, modules, container runtimes, free space of the work folder.

    With --blueprint (and its -i inputs, as for deploy), the sites are those the blueprint
    runs on (or the NAMEs given), each checked for what the blueprint's nodes will use there:
    their scheduler's commands (Slurm's or SGE's), their modules (and `module`), partitions,
    accounts and QoS (which SGE cannot honour), SGE's parallel environment,
    enqueue_compss once the modules are loaded, the image builders and runtimes; images built
    on this machine need their builder here too. Each finding names the nodes behind it.

    \b
    Exit status: 0 all fine; 4 something needed is missing; 3 a site is unreachable (or
    sites.yaml is wrong); 1 the blueprint or its inputs have errors.
    """
    from orch.sites.check import check_local, check_sites
    from orch.sites.config import SitesError
    from orch.transport.base import HostKeyPolicy

    book = _load(sites_file)
    try:
        needs = _needs(blueprint, input_specs, catalogs, book, fmt) if blueprint else None
        if names or needs is None:
            chosen = [book.get(n) for n in dict.fromkeys(names)] if names else list(book)
        else:
            chosen = [book.get(n) for n in needs.sites]
    except SitesError as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        sys.exit(exitcodes.CONFIG)
    if not chosen and needs is None:
        _fail(f"no sites in {book.path}")
    local = check_local(needs) if needs is not None else None
    if local is not None and fmt == "text":
        click.echo(_local_text(local, needs), nl=False)
    policy = HostKeyPolicy.of(known_hosts, accept_new_host_keys)
    reports = []
    options = {"connect_timeout": connect_timeout, "timeout": timeout, "needs": needs}
    for report in check_sites(chosen, policy, **options):
        reports.append(report)
        if fmt == "text":
            click.echo(_report_text(report), nl=False)
    statuses = [r.status for r in reports] + ([local.status] if local is not None else [])
    code = _exit_code(statuses)
    if fmt == "json":
        status = {0: "ok", 3: "unreachable", 4: "missing"}[code]
        data: dict[str, Any] = {"status": status}
        if needs is not None and local is not None:
            data |= {"blueprint": needs.blueprint, "local": local.as_dict()}
        data["sites"] = [r.as_dict() for r in reports]
        click.echo(_json(data), nl=False)
    sys.exit(code)


def _needs(
    blueprint: Path, input_specs: tuple[str, ...], catalogs: tuple[Path, ...], book: Any, fmt: str
) -> Any:
    """What the blueprint needs of each site; its problems are reported as deploy reports
    them (exit 1)."""
    from orch.cli.deploy import _show_diagnostics
    from orch.deployments import BlueprintProblems, prepare
    from orch.sites.needs import blueprint_needs

    try:
        prepared = prepare(str(blueprint), list(input_specs), [str(c) for c in catalogs])
    except BlueprintProblems as exc:
        _show_diagnostics(exc.diagnostics, fmt)
        sys.exit(exitcodes.FINDINGS)
    return blueprint_needs(str(blueprint), prepared.model, prepared.inputs, book)


def _local_text(report: Any, needs: Any) -> str:
    """This machine's part of a blueprint's check (the builders of images built here)."""
    lines = [f"this machine (orch), for {needs.blueprint}:"]
    lines += _finding_lines(report.findings)
    if not report.findings:
        lines.append(f"  {'ok':<8} nothing is needed here")
    missing = sum(f.level == "missing" for f in report.findings)
    lines.append("this machine: " + ("ok" if not missing else f"{missing} missing"))
    return "\n".join(lines) + "\n"


def _finding_lines(findings: list[Any]) -> list[str]:
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for finding in findings:
        lines.append(f"  {_MARKS[finding.level]:<8} {finding.check:<{width}}  {finding.message}")
        if finding.hint:
            lines.append(f"  {'':<8} {'':<{width}}  hint: {finding.hint}")
    return lines


def _exit_code(statuses: list[str]) -> int:
    """Unreachable (3) outranks missing (4): nothing at all could be checked there."""
    if "unreachable" in statuses:
        return 3
    return 4 if "missing" in statuses else 0


_MARKS = {"ok": "ok", "info": "info", "warning": "warning", "missing": "MISSING"}


def _report_text(report: Any) -> str:
    site = report.site
    if report.status == "unreachable":
        return f"{site.name}: UNREACHABLE: {report.error}\n"
    facts = report.facts
    where = f"{facts.get('remote_user', site.user or '?')}@{site.address}:{site.port}"
    lines = [
        f"{site.name}: {where}, login node {facts.get('hostname', '?')} "
        f"({facts.get('system', '?')}), checked in {report.seconds:.2f} s"
    ]
    lines += _finding_lines(report.findings)
    missing = sum(f.level == "missing" for f in report.findings)
    warnings = sum(f.level == "warning" for f in report.findings)
    verdict = "ok" if not missing else f"{missing} missing"
    lines.append(f"{site.name}: {verdict}" + (f", {warnings} warning(s)" if warnings else ""))
    return "\n".join(lines) + "\n"


# -- orch credentials -------------------------------------------------------------------------


@click.group("credentials")
def credentials() -> None:
    """SSH keys kept by orch, named by a token that blueprints and sites.yaml refer to.

    Keys live in $ORCH_DATA_HOME (else $XDG_DATA_HOME/orch, else ~/.local/share/orch) under
    credentials/TOKEN/, 0600 in 0700 folders, and are read only when a connection opens.
    """


def _store() -> Any:
    from orch.sites.credentials import CredentialStore

    return CredentialStore.default()


def _install_instruction(public_key: str) -> None:
    click.echo(
        "Add this public key to ~/.ssh/authorized_keys on each site that uses the token:", err=True
    )
    click.echo(public_key, err=True)


@credentials.command("generate", short_help="Make an Ed25519 key pair; print its token.")
@click.option("--comment", help="Comment of the public key (default: orch USER@HOST).")
@_credential_errors
def generate(comment: str | None) -> None:
    """Make an Ed25519 key pair; print its token (stdout) and public key (stderr)."""
    credential = _store().generate(comment)
    click.echo(credential.token)
    _install_instruction(credential.public_key)


@credentials.command("add", short_help="Import a private key file; print its token.")
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--comment", help="Comment of the public key (default: the .pub file's).")
@_credential_errors
def add(keyfile: Path, comment: str | None) -> None:
    """Import the private key KEYFILE (Ed25519, ECDSA or RSA, no passphrase); print its token."""
    from orch.sites.credentials import loose_permissions

    store = _store()
    credential, new = store.add(keyfile, comment)
    if loose_permissions(keyfile):
        click.echo(
            f"orch: warning: {keyfile} is readable by other users: consider the key "
            "exposed (orch's copy is 0600)",
            err=True,
        )
    if not new:
        click.echo(f"orch: this key is already stored as {credential.token}", err=True)
    click.echo(credential.token)
    if new:
        _install_instruction(credential.public_key)


@credentials.command("list", short_help="List the stored credentials (never the keys).")
@_format_option
@_credential_errors
def list_credentials(fmt: str) -> None:
    """List the stored credentials (token, type, fingerprint, comment, created)."""
    found = _store().list()
    if fmt == "json":
        click.echo(_json([c.as_dict() for c in found]), nl=False)
        return
    rows = [[c.token, c.key_type, c.fingerprint, c.comment, c.created] for c in found]
    click.echo(_columns(["TOKEN", "TYPE", "FINGERPRINT", "COMMENT", "CREATED"], rows), nl=False)


@credentials.command("remove", short_help="Delete a stored credential.")
@click.argument("token")
@_credential_errors
def remove(token: str) -> None:
    """Delete credential TOKEN's key (remove its public key from the sites yourself)."""
    credential = _store().remove(token)
    click.echo(
        f"removed {token} ({credential.key_type} {credential.fingerprint}); remove "
        f"its public key from ~/.ssh/authorized_keys on the sites: "
        f"{credential.public_key}",
        err=True,
    )


@credentials.command("public-key", short_help="Print a credential's public key line.")
@click.argument("token")
@_credential_errors
def public_key(token: str) -> None:
    """Print credential TOKEN's public key line (for authorized_keys)."""
    click.echo(_store().public_key(token))
