"""``sites.yaml``: the HPC sites orch knows, by name.

A site is configuration, not code: its login node, how to log in (a credential token or a key
file), its scheduler and defaults (partition, account, QoS), modules, work folder, container
runtime and environment. The file is checked against ``sites.schema.json`` (the one source of
its keys, also usable by editors) and every problem is reported at its ``file:line:col`` with
the valid keys or values, like ``orch validate`` does for blueprints.

Which file: ``--sites FILE``, else ``$ORCH_SITES``, else ``./sites.yaml``, else
``$XDG_CONFIG_HOME/orch/sites.yaml`` (``~/.config/orch/sites.yaml``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orch import schema_messages
from orch.tosca.diagnostics import Diagnostic, Location, Severity, did_you_mean

if TYPE_CHECKING:
    from orch.executors.base import Host
    from orch.sites.credentials import CredentialStore
    from orch.tosca.loader import LoadedFile

SCHEMA_FILE = "sites.schema.json"
FILE_NAME = "sites.yaml"
DEFAULT_WORK_DIR = "~/orch-work"

Scheduler = Literal["slurm", "sge", "pbs", "none"]
ContainerRuntime = Literal["apptainer", "podman"]


@dataclass(frozen=True)
class Site:
    """One site of ``sites.yaml`` with defaults applied (YAML key ``host`` is ``address``)."""

    name: str
    address: str
    """The login node (``host`` in sites.yaml)."""
    port: int = 22
    user: str | None = None
    """None: the local user name, as ssh does."""
    credentials: str | None = None
    """Token of a stored key (``orch credentials``); the key itself is read at connection."""
    identity_file: str | None = None
    scheduler: Scheduler = "slurm"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    parallel_environment: str | None = None
    """SGE: the parallel environment jobs of more than one slot ask for (``qsub -pe``)."""
    modules: tuple[str, ...] = ()
    work_dir: str = DEFAULT_WORK_DIR
    """On the site: absolute, ``~/...``, relative to the home, or with ``$VARIABLES``."""
    container_runtime: ContainerRuntime | None = None
    environment: dict[str, str] = field(default_factory=dict)
    known_hosts: str | None = None
    registry: str | None = None
    """eFlows4HPC workflow registry (a folder, absolute, or a git URL) for image recipes."""
    image_base: str | None = None
    environments: tuple[str, ...] = ()
    """Execution environment nodes that are this site unless --site says otherwise."""
    location: Location | None = field(default=None, compare=False)
    """Where the site is defined (for messages)."""

    def login(self) -> str:
        """``user@host:port`` as messages show it."""
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}"

    def host(self, store: CredentialStore | None = None) -> Host:
        """The SSH target of the site. A credential token becomes the stored key's file, so the
        key is read only when the connection opens and never sits in a Host or in state."""
        from orch.executors.base import Host

        identity = self.identity_file
        if self.credentials:
            from orch.sites.credentials import CredentialStore

            store = store or CredentialStore.default()
            identity = str(store.key_path(self.credentials))
        return Host(
            self.name,
            address=self.address,
            port=self.port,
            user=self.user,
            identity_file=identity,
            known_hosts=os.path.expanduser(self.known_hosts) if self.known_hosts else None,
        )


class SitesError(Exception):
    """``sites.yaml`` is missing, unreadable or wrong; ``diagnostics`` say where and why."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("\n".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class SiteBook:
    """The sites of one file, by name."""

    path: Path
    sites: dict[str, Site]
    refused: dict[str, str] = field(default_factory=dict)
    """Sites of the file this run may not use, and why (``ORCH_SITE_ACCOUNTS_ONLY``)."""

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def __len__(self) -> int:
        return len(self.sites)

    def get(self, name: str) -> Site:
        """The site called ``name``; an unknown name is an error naming the known ones."""
        site = self.sites.get(name)
        if site is not None:
            return site
        if name in self.refused:
            raise SitesError([Diagnostic("sites.no-account", Severity.ERROR, self.refused[name],
                                         Location(str(self.path)))])  # fmt: skip
        known = ", ".join(sorted(self.sites)) or "none"
        hint = did_you_mean(name, self.sites) if self.sites else f"add it to {self.path}"
        raise SitesError(
            [
                Diagnostic(
                    "sites.unknown-site",
                    Severity.ERROR,
                    f"no site '{name}' in {self.path} (sites: {known})",
                    Location(str(self.path)),
                    hint or None,
                )
            ]
        )


# -- which file --------------------------------------------------------------------------------


def candidates(cwd: Path | None = None, env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where ``sites.yaml`` is looked for when no file is named, first match wins."""
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        config = Path(xdg)
    else:
        config = (Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".config"
    return [cwd / FILE_NAME, config / "orch" / FILE_NAME]


_LOADED: dict[tuple[str, int, str], SiteBook] = {}


ACCOUNTS_ONLY_ENV = "ORCH_SITE_ACCOUNTS_ONLY"
"""When set: the sites without an account in ``$ORCH_SITE_ACCOUNTS`` may not be used."""
ACCOUNTS_ENV = "ORCH_SITE_ACCOUNTS"
"""Names a JSON file ``{site: {"user": login, "credentials": token}}``: the account each of
those sites is logged into instead of sites.yaml's (``orch serve`` runs a user's execution
with that user's own accounts)."""


def current_sites() -> SiteBook:
    """``load_sites()`` for the engine, which asks once per operation: the file is read again
    only when it changed. The accounts of ``$ORCH_SITE_ACCOUNTS`` replace the file's."""
    chosen = find_sites_file()
    accounts = os.environ.get(ACCOUNTS_ENV) or ""
    only = bool(os.environ.get(ACCOUNTS_ONLY_ENV))
    key = (str(chosen.resolve()), chosen.stat().st_mtime_ns, accounts + "|" * only)
    book = _LOADED.get(key)
    if book is None:
        book = load_sites(chosen)
        if accounts or only:
            book = with_accounts(book, Path(accounts) if accounts else None, only=only)
        _LOADED[key] = book
    return book


def with_accounts(book: SiteBook, path: Path | None, *, only: bool = False) -> SiteBook:
    """``book`` with the sites of the accounts file ``path`` logged into as it says (its
    credential token instead of any key file); with ``only``, without the others."""
    if path is None:
        accounts: Any = {}
    else:
        try:
            accounts = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            message = f"{ACCOUNTS_ENV} names {path}, which cannot be read: {exc}"
            raise _file_error(path, message) from None
    if not isinstance(accounts, dict):
        raise _file_error(book.path, f"{path} is not a JSON object of site accounts")
    sites = dict(book.sites)
    for name, account in accounts.items():
        site = sites.get(name)
        if site is None or not isinstance(account, dict):
            continue  # an account of a site this file does not have: not used
        user, token = account.get("user"), account.get("credentials")
        if not isinstance(user, str) or not isinstance(token, str):
            raise _file_error(path, f"{path}: the account of site '{name}' needs a 'user' "
                              "and a 'credentials' token")  # fmt: skip
        sites[name] = replace(site, user=user, credentials=token, identity_file=None)
    refused = {}
    if only:
        for name in [n for n in sites if not isinstance(accounts.get(n), dict)]:
            del sites[name]
            refused[name] = (
                f"site '{name}' is used with its invoker's own account only, and they have "
                f"none there: make a key for it (POST /ssh_keys with metadata site: {name} "
                "and login), then put its public key in ~/.ssh/authorized_keys on the site"
            )
    return SiteBook(book.path, sites, refused)


def find_sites_file(
    path: str | os.PathLike[str] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> Path:
    """The file to read: ``path``, else ``$ORCH_SITES``, else the first of ``candidates``."""
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    named, origin = (path, "--sites") if path else (env.get("ORCH_SITES"), "ORCH_SITES")
    if named:
        chosen = cwd / Path(named).expanduser()
        if not chosen.is_file():
            raise _file_error(chosen, f"{origin} names {chosen}, which is not a file")
        return chosen
    looked = candidates(cwd, env)
    for candidate in looked:
        if candidate.is_file():
            return candidate
    raise _file_error(
        looked[0],
        f"no sites.yaml (looked at {', '.join(str(p) for p in looked)})",
        "write one (see `orch sites --help`), or name it with --sites FILE or ORCH_SITES",
    )


def _file_error(path: Path, message: str, hint: str | None = None) -> SitesError:
    return SitesError(
        [Diagnostic("sites.file", Severity.ERROR, message, Location(str(path)), hint)]
    )


# -- reading -----------------------------------------------------------------------------------
MAX_SITES_BYTES = 4 * 1024 * 1024
"""A sites.yaml: a few lines per site."""


def load_sites(
    path: str | os.PathLike[str] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> SiteBook:
    """Find, parse and check ``sites.yaml``. Raises ``SitesError`` listing every problem.

    Read as blueprints are (a regular file of at most ``MAX_SITES_BYTES``, aliases and
    integers bounded); a duplicate key is an error (two sites of one name: none may win)."""
    from orch.tosca.loader import YamlError, as_error, load_file, yaml_error_diagnostics

    chosen = find_sites_file(path, cwd, env)
    try:
        loaded = load_file(str(chosen), MAX_SITES_BYTES, "sites.yaml")
    except YamlError as exc:
        raise SitesError(yaml_error_diagnostics(exc)) from None
    except OSError as exc:
        raise _file_error(chosen, f"cannot read {chosen}: {exc.strerror or exc}") from None
    problems = [as_error(d) for d in loaded.warnings] + schema_problems(loaded)
    if problems:
        raise SitesError(sorted(problems, key=Diagnostic.sort_key))
    sites = loaded.data["sites"] or {}
    return SiteBook(
        chosen,
        {
            name: _site(name, raw or {}, chosen.parent, loaded.location(("sites", name), key=True))
            for name, raw in sites.items()
        },
    )


def _site(name: str, raw: Mapping[str, Any], folder: Path, where: Location) -> Site:
    from orch.tosca.loader import scalar_text

    def text(key: str) -> str | None:
        value = raw.get(key)
        return None if value is None else scalar_text(value)

    def local_path(key: str) -> str | None:
        value = text(key)
        return None if value is None else str(folder / Path(value).expanduser())

    runtime = text("container_runtime")
    return Site(
        name=name,
        address=str(raw["host"]),
        port=int(raw.get("port") or 22),
        user=text("user"),
        credentials=text("credentials"),
        identity_file=local_path("identity_file"),
        scheduler=text("scheduler") or "slurm",  # type: ignore[arg-type]
        partition=text("partition"),
        account=text("account"),
        qos=text("qos"),
        parallel_environment=text("parallel_environment"),
        modules=tuple(str(m) for m in raw.get("modules") or ()),
        work_dir=text("work_dir") or DEFAULT_WORK_DIR,
        container_runtime=None if runtime in (None, "none") else runtime,  # type: ignore[arg-type]
        environment={k: scalar_text(v) for k, v in (raw.get("environment") or {}).items()},
        known_hosts=local_path("known_hosts"),
        registry=_registry(text("registry"), folder),
        image_base=text("image_base"),
        environments=tuple(str(e) for e in raw.get("environments") or ()),
        location=where,
    )


def _registry(value: str | None, folder: Path) -> str | None:
    """A registry: a URL as written, a folder relative to sites.yaml made absolute."""
    if value is None or "://" in value or value.startswith("git@"):
        return value
    return str(folder / Path(value).expanduser())


# -- the schema --------------------------------------------------------------------------------


def schema_text() -> str:
    return (Path(__file__).parent / SCHEMA_FILE).read_text("utf-8")


@cache
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@cache
def _validator() -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    return cls(schema())


def schema_problems(loaded: LoadedFile) -> list[Diagnostic]:
    """Every schema violation of the file, each placed at its key or value."""
    errors = _validator().iter_errors(loaded.data)
    found: dict[tuple[Location, str], Diagnostic] = {}
    for error in errors:
        for diagnostic in _diagnostics(error, loaded):
            found.setdefault((diagnostic.location, diagnostic.message), diagnostic)
    return list(found.values())


def _what(path: tuple[Any, ...]) -> str:
    """How messages name the place of ``path``: "site 'x'", "'port' of site 'x'", ..."""
    if not path:
        return "sites.yaml"
    if path == ("sites",):
        return "'sites'"
    if len(path) == 2:
        return f"site '{path[1]}'"
    inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[3:])
    return f"'{path[2]}{inner}' of site '{path[1]}'"


_HINTS = {
    "credentials": "a token printed by `orch credentials generate` or `orch credentials add`",
    "work_dir": "an absolute path, ~/..., a path relative to the home, with $NAME or ${NAME} "
    "variables of the site (no quotes, backslashes or command substitution)",
    "host": "a host name or address, without user@ (that is 'user') or a path",
    "modules": "module names as `module load` takes them, e.g. gcc/12.2.0",
}


def _diagnostics(error: Any, loaded: LoadedFile) -> list[Diagnostic]:
    """One jsonschema error as diagnostics at the key or value it is about, worded as the
    blueprints' grammar words the same mistake (``orch.schema_messages``)."""
    path = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path:
        return [_bad_name(error, loaded, path)]
    kind = error.validator
    if kind == "not":
        message = f"{_what(path)} gives both 'credentials' and 'identity_file'"
        hint = "keep one: a credential token, or a key file of this machine"
        return [Diagnostic("sites.value", Severity.ERROR, message,
                           loaded.location(path, key=True), hint)]  # fmt: skip
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    wordings = schema_messages.describe(kind, error.instance, _what(path), error.schema,
                                        form=_HINTS.get(key))  # fmt: skip
    if wordings is None:  # pragma: no cover - not in the schema
        wordings = [schema_messages.Wording(f"{_what(path)}: {error.message}")]
    found = []
    for wording in wordings:
        hint = wording.hint_text()
        if kind == "additionalProperties":
            rule, where = "sites.unknown-key", loaded.location((*path, wording.key), key=True)
        elif kind == "required":
            rule, where = "sites.missing-key", loaded.location(path, key=bool(path))
            hint = "e.g. host: login.example.org" if path else "sites: {NAME: {...}}"
        else:
            rule, where = "sites.value", loaded.location(path, key=False)
            if kind == "type" and not path:
                hint = "sites.yaml starts with 'sites:', then one mapping per site"
        found.append(Diagnostic(rule, Severity.ERROR, wording.message, where, hint))
    return found


def _bad_name(error: Any, loaded: LoadedFile, path: tuple[Any, ...]) -> Diagnostic:
    """A site name or an environment variable name that cannot be one."""
    name = error.instance
    if path == ("sites",):
        message = f"site name '{name}' is not usable"
        hint = "letters, digits, '.', '_' and '-', starting with a letter or digit"
    else:
        message = f"'{name}' is not an environment variable name ({_what(path)})"
        hint = "letters, digits and '_', not starting with a digit"
    return Diagnostic(
        "sites.name", Severity.ERROR, message, loaded.location((*path, name), key=True), hint
    )


WORK_DIR_PATTERN = re.compile(
    r"(?:[^`\"\\$]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})+\Z"
)
"""What a work directory may hold: the schema's pattern, for Sites made in code."""
