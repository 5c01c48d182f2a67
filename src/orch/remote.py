"""What orch does on a site's host, below the executors and the image builders that both use
it: the site's defaults for a node, where a node's files live there, the shell lines that set
up the site's environment and modules, and how much of a command's output is kept.

It reads an operation through ``SiteTask`` (the few fields it needs), never the executors'
``Task``: ``orch.images`` builds on sites without importing ``orch.executors``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from orch.sites.modules import MODULE_INIT
from orch.transport.base import Transport, TransportError

OperationStatus = Literal["ok", "failed", "timeout", "cancelled"]

TAIL_LINES = 20
"""How many last lines of stdout/stderr an operation record keeps."""

LogSink = Callable[[str, str], None]
"""``sink(stream, line)``: a line of an operation's output, stream 'stdout' or 'stderr'."""

DEFAULT_WORK_DIR = "orch-work"
"""Folder (relative to the home) of nodes hosted on a plain Compute, not a site of sites.yaml."""


class SiteTask(Protocol):
    """What these helpers read of an operation (``orch.executors.base.Task`` is one)."""

    @property
    def deployment(self) -> str: ...

    @property
    def node(self) -> str: ...

    @property
    def properties(self) -> Mapping[str, Any]: ...

    @property
    def site(self) -> Any:
        """The ``orch.sites.config.Site`` of sites.yaml the operation runs on, or None."""
        ...


def site_default(task: SiteTask, key: str) -> Any:
    """A site default from sites.yaml (partition, account, qos, modules...), None without one."""
    return getattr(task.site, key, None) if task.site is not None else None


def setting(task: SiteTask, key: str, site_key: str | None = None) -> Any:
    """The node's property when set (not None, not empty), else the site's default."""
    value = task.properties.get(key)
    if value not in (None, "", [], {}):
        return value
    return site_default(task, site_key or key)


def expand_home(path: str, transport: Transport) -> str:
    """An absolute path on the host: ``~`` and relative paths are under the user's home;
    ``$VARIABLES`` are left for the remote shell."""
    if path == "~" or path.startswith("~/"):
        return posixpath.join(transport.home(), path[2:])
    if path.startswith(("/", "$")):
        return path
    return posixpath.join(transport.home(), path)


def work_root(task: SiteTask, transport: Transport) -> str:
    """The site's work folder (sites.yaml ``work_dir``), absolute. Its ``$VARIABLES`` are
    expanded on the site with the site's environment, as ``orch sites check`` does: SFTP and
    quoted paths would take ``$SCRATCH`` for a folder's name."""
    raw = str(site_default(task, "work_dir") or DEFAULT_WORK_DIR)
    if "$" not in raw:
        return expand_home(raw, transport)
    environment = {str(k): str(v) for k, v in (site_default(task, "environment") or {}).items()}
    return expand_home(resolve_on_site(raw, transport, environment), transport)


_RESOLVED: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
_RESOLVING = threading.Lock()


def resolve_on_site(path: str, transport: Transport, environment: dict[str, str]) -> str:
    """``path`` with its variables expanded by the host's shell (once per host, path and
    environment); an unset variable is an error naming it. The path holds no quote, backslash
    nor command substitution (sites.yaml's schema)."""
    key = (transport.host, path, tuple(sorted(environment.items())))
    with _RESOLVING:
        if key in _RESOLVED:
            return _RESOLVED[key]
    command = """set -u; eval "printf '%s' \"$ORCH_PATH\"" """
    result = transport.run(command, env={**environment, "ORCH_PATH": path}, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.rc != 0 or not result.stdout:
        why = lines[-1] if lines else f"exit status {result.rc}"
        raise TransportError(
            f"{transport.host}: work_dir {path} cannot be expanded there ({why}): set the "
            "variable in the site's environment in sites.yaml",
            host=transport.host, started=True,
        )  # fmt: skip
    with _RESOLVING:
        _RESOLVED[key] = result.stdout
    return result.stdout


def node_dir(task: SiteTask, transport: Transport, prop: str = "workdir") -> str:
    """The node's folder on its host: its ``prop`` property (absolute, or relative to the work
    folder), else ``<work folder>/<deployment>/<node>``."""
    own = task.properties.get(prop)
    root = work_root(task, transport)
    if own:
        own = str(own)
        if own.startswith(("/", "~", "$")):
            return expand_home(own, transport)
        return posixpath.join(root, own)
    return posixpath.join(root, safe_segment(task.deployment), safe_segment(task.node))


def deployment_dir(task: SiteTask, transport: Transport) -> str:
    """``<work folder>/<deployment>``: where the nodes' default folders are."""
    return posixpath.join(work_root(task, transport), safe_segment(task.deployment))


def remove_if_empty(folder: str) -> str:
    """A shell command removing ``folder`` if nothing is left in it (never failing): what
    undeploy removed leaves no empty folder of orch's behind."""
    return f"rmdir -- {quote_path(folder)} 2>/dev/null || :"


def safe_segment(name: str) -> str:
    """A name usable as one folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "x"


def quote_path(path: str) -> str:
    """A path for the remote shell: quoted, except a leading ``$VAR`` (left to expand)."""
    match = re.match(r"^(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)(/.*)?$", path)
    if match:
        return f'"{match.group(1)}"' + (shlex.quote(match.group(2)) if match.group(2) else "")
    return shlex.quote(path)


def environment_lines(task: SiteTask, variables: dict[str, Any] | None = None) -> list[str]:
    """``export`` lines: the site's environment, then the node's own over it."""
    merged: dict[str, str] = {}
    merged.update({str(k): str(v) for k, v in (site_default(task, "environment") or {}).items()})
    merged.update({str(k): str(v) for k, v in (variables or {}).items()})
    return [f"export {name}={shlex.quote(value)}" for name, value in merged.items()
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]


def module_lines(modules: Any) -> list[str]:
    """``module load`` lines for a list of modules (none for an empty list), after
    ``MODULE_INIT``."""
    names = [str(m) for m in (modules or []) if str(m).strip()]
    if not names:
        return []
    return [MODULE_INIT, "module load " + " ".join(shlex.quote(m) for m in names)]
