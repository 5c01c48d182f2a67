"""Values for Yorc's ``get_secret`` (and ``get_vault_secret``), kept by orch: no Vault.

eFlows4HPC topologies read service passwords with ``{get_secret: [PATH, data=FIELD]}``, where
PATH is a Vault path and each further argument an option (``data=FIELD`` picks a field of a
KV v2 secret; other options are ignored, as Yorc ignores those it does not know). orch answers
these calls from its own store, one entry per (path, field):

- the store is ``$ORCH_DATA_HOME/secrets`` (else ``$XDG_DATA_HOME/orch/secrets``, else
  ``~/.local/share/orch/secrets``): a 0700 folder of 0600 files, one per entry, named by the
  SHA-256 of the entry's path and field (a path or field never becomes a file name, so no name
  can reach outside the folder);
- an entry is replaced atomically (a new file written, flushed to disk, then renamed over the
  old one), and created 0600 from the start: no moment where another user could read it, and
  a crash or a kill while writing leaves the old value;
- paths are **normalised** so that Vault's spellings of one KV v2 secret are one entry: leading,
  trailing and repeated ``/`` are dropped, and when the path has three segments or more, a
  second segment ``data`` (the KV v2 API's ``<mount>/data/<name>``) is dropped.
  ``/secret/data/services_secrets/dls``, ``secret/data/services_secrets/dls`` and
  ``/secret/services_secrets/dls`` are all ``secret/services_secrets/dls``;
- without a ``data=`` option, the field is ``value`` (``DEFAULT_FIELD``);
- paths (up to 1024 characters) and fields (up to 256) are text without NUL, control or
  formatting characters; ``.`` and ``..`` are no path segments. A value is UTF-8 text without
  NUL, up to 1 MiB.

Nothing here ever puts a value in a message: errors name the path and the field only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets as random
import shlex
import stat
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.sites.credentials import data_home

DEFAULT_FIELD = "value"
"""The field read by a ``get_secret`` call without a ``data=`` option."""
MAX_PATH = 1024
MAX_FIELD = 256
MAX_VALUE_BYTES = 1024 * 1024
MIN_SHOWN = 4
"""Values shorter than this cannot be masked (``masking.MIN_SECRET_LENGTH``): deploy warns."""
HIDDEN = "<secret: hidden>"
"""What an output that read a secret shows and stores (as ``deployments.SECRET_OUTPUT``)."""
FUNCTIONS = frozenset({"get_secret", "get_vault_secret"})
SUFFIX = ".secret"
_ENTRY = re.compile(r"[0-9a-f]{64}\.secret\Z")
_TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 600
"""A temporary file older than this was left by a writer that died: removed at the next
write (a younger one may be another writer's, about to be renamed)."""
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class SecretError(Exception):
    """A secret cannot be stored, found or read; the message names the path and the field,
    never a value."""


class SecretMissing(SecretError):
    """The store has no such entry."""


@dataclass(frozen=True, order=True)
class Entry:
    path: str
    """Normalised."""
    field: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "field": self.field}


# -- names ------------------------------------------------------------------------------------


def shown(text: Any, limit: int = 120) -> str:
    """``text`` safe to print: control and formatting characters escaped, long text cut."""
    text = str(text)
    out = "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in _BAD_CATEGORIES else c for c in text
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _check_text(text: Any, what: str, limit: int) -> str:
    if not isinstance(text, str):
        raise SecretError(f"a secret {what} must be text, not {type(text).__name__}")
    if not text:
        raise SecretError(f"a secret {what} cannot be empty")
    if len(text) > limit:
        raise SecretError(
            f"secret {what} '{shown(text, 60)}' is {len(text)} characters long (at most {limit})"
        )
    bad = next((c for c in text if unicodedata.category(c) in _BAD_CATEGORIES), None)
    if bad is not None:
        raise SecretError(
            f"secret {what} '{shown(text)}' holds the control or formatting character "
            f"U+{ord(bad):04X}: not allowed"
        )
    return text


def normalise_path(path: Any) -> str:
    """The entry a Vault path names (see the module's rule)."""
    _check_text(path, "path", MAX_PATH)
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise SecretError(f"secret path '{shown(path)}' names nothing")
    if any(p in (".", "..") for p in parts):
        raise SecretError(f"secret path '{shown(path)}' has a '.' or '..' segment: not allowed")
    if len(parts) >= 3 and parts[1] == "data":
        del parts[1]
    return "/".join(parts)


def check_field(field: Any) -> str:
    return _check_text(field, "field", MAX_FIELD)


def entry(path: Any, field: Any) -> Entry:
    return Entry(normalise_path(path), check_field(field))


def file_name(item: Entry) -> str:
    digest = hashlib.sha256(f"{item.path}\0{item.field}".encode()).hexdigest()
    return digest + SUFFIX


def field_of(options: Iterable[Any]) -> str:
    """The field a ``get_secret`` call's options select: ``data=FIELD`` (the last one), else
    ``DEFAULT_FIELD``. Other options are ignored, as Yorc does."""
    field = DEFAULT_FIELD
    for option in options:
        if not isinstance(option, str):
            raise SecretError(
                f"get_secret options are text such as data=FIELD, not {type(option).__name__}"
            )
        key, sep, value = option.partition("=")
        if key.strip() == "data":
            if not sep or not value:
                raise SecretError("get_secret option 'data=' needs a field name: data=FIELD")
            field = value
    return check_field(field)


def set_command(path: str, field: str) -> str:
    """The command that stores the entry, quoted for a POSIX shell."""
    return f"orch secrets set {shlex.quote(path)} {shlex.quote(field)}"


# -- values -----------------------------------------------------------------------------------


def check_value(value: Any) -> str:
    if not isinstance(value, str):
        raise SecretError("a secret value must be text")
    if not value:
        raise SecretError("the secret value is empty (nothing was read): nothing stored")
    if "\0" in value:
        raise SecretError("the secret value holds a NUL character, which no program can be given")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise SecretError(f"the secret value is larger than {MAX_VALUE_BYTES} bytes")
    return value


def value_from_bytes(data: bytes) -> str:
    """A value as ``orch secrets set`` reads it: UTF-8, one trailing newline removed."""
    if len(data) > MAX_VALUE_BYTES:
        raise SecretError(f"the secret value is larger than {MAX_VALUE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError("the secret value is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return check_value(text)


# -- the store --------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) and leave it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` by a file holding ``data``, 0600 from its creation: a temporary file
    in the same folder, written, flushed to disk, then renamed over ``target`` (a crash at any
    point leaves either the old file or the new one, whole)."""
    temp = target.with_name(f"{_TEMP_PREFIX}{random.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # 0600 or less already (umask); never more
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(target.parent)


class SecretStore:
    """The folder of stored secrets (see the module's docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def default(cls, env: Mapping[str, str] = os.environ) -> SecretStore:
        return cls(data_home(env) / "secrets")

    def _file(self, item: Entry) -> Path:
        return self.root / file_name(item)

    # -- writing -------------------------------------------------------------------------

    def set(self, path: str, field: str, value: str) -> tuple[Entry, bool]:
        """Store ``value`` at (path, field); returns the entry and whether it replaced one."""
        item = entry(path, field)
        value = check_value(value)
        _private_dir(self.root)
        self._remove_stale_temps()
        target = self._file(item)
        existed = target.exists()
        data = json.dumps({"path": item.path, "field": item.field, "value": value},
                          ensure_ascii=False).encode("utf-8", "surrogatepass")  # fmt: skip
        write_atomic(target, data)
        return item, existed

    def remove(self, path: str, field: str | None = None) -> list[Entry]:
        """Remove (path, field), or every field of ``path``; the entries removed."""
        norm = normalise_path(path)
        if field is not None:
            item = Entry(norm, check_field(field))
            try:
                self._file(item).unlink()
            except FileNotFoundError:
                raise SecretMissing(
                    f"no secret '{shown(item.field)}' at '{shown(item.path)}' in {self.root} "
                    "(see `orch secrets list`)"
                ) from None
            removed = [item]
        else:
            removed = [e for e in self.list() if e.path == norm]
            if not removed:
                raise SecretMissing(
                    f"no secret at '{shown(norm)}' in {self.root} (see `orch secrets list`)"
                )
            for item in removed:
                with contextlib.suppress(FileNotFoundError):
                    self._file(item).unlink()
        _fsync_dir(self.root)
        return removed

    def _remove_stale_temps(self) -> None:
        limit = time.time() - STALE_TEMP_SECONDS
        with contextlib.suppress(OSError):
            for child in self.root.iterdir():
                if child.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(OSError):
                        if child.lstat().st_mtime < limit:
                            child.unlink()

    # -- reading -------------------------------------------------------------------------

    def _read(self, target: Path) -> dict[str, Any]:
        try:
            fd = os.open(target, _OPEN_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SecretError(f"cannot read {target}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SecretError(f"{target} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise SecretError(
                    f"{target} is open to other users (mode {mode:04o}): close it with "
                    f"chmod 600 {target}, and consider its secret exposed"
                )
            if info.st_size > 6 * (MAX_VALUE_BYTES + 4 * (MAX_PATH + MAX_FIELD)):  # \u escapes
                raise SecretError(f"{target} is too large to be one of orch's secrets")
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        try:
            record = json.loads(b"".join(chunks).decode("utf-8", "surrogatepass"))
        except ValueError:
            raise SecretError(f"{target} is damaged: store its secret again") from None
        if not isinstance(record, dict) or not all(
            isinstance(record.get(k), str) for k in ("path", "field", "value")
        ):
            raise SecretError(f"{target} is damaged: store its secret again")
        if self._file(Entry(record["path"], record["field"])).name != target.name:
            raise SecretError(f"{target} does not hold the secret its name says")
        return record

    def get(self, path: str, field: str) -> str:
        item = entry(path, field)
        try:
            return str(self._read(self._file(item))["value"])
        except FileNotFoundError:
            raise self._unknown(item) from None

    def has(self, path: str, field: str) -> bool:
        try:
            self.get(path, field)
        except SecretError:
            return False
        return True

    def list(self) -> list[Entry]:
        """Every readable entry, by path then field (never a value)."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            if _ENTRY.match(child.name):
                with contextlib.suppress(SecretError, OSError):
                    record = self._read(child)
                    found.append(Entry(record["path"], record["field"]))
        return sorted(found)

    def _unknown(self, item: Entry) -> SecretMissing:
        return SecretMissing(
            f"no secret '{shown(item.field)}' at '{shown(item.path)}' in orch's secret store "
            f"({self.root}); store it with: {shown(set_command(item.path, item.field), 400)} "
            "(the value is read from standard input)"
        )


def lookup(
    path: Any, options: Iterable[Any] = (), store: SecretStore | None = None
) -> str:
    """The value of ``{get_secret: [path, *options]}``; SecretError (naming the path and the
    field, never a value) when it cannot be given."""
    store = store if store is not None else SecretStore.default()
    return store.get(path, field_of(options))


# -- before a run: which get_secret calls have no value ------------------------------------


@dataclass(frozen=True)
class Missing:
    node: str
    """The node template (or '-' for the topology's outputs and inputs)."""
    where: str
    """The property, attribute, operation input or output that calls get_secret."""
    path: str
    """As written in the blueprint."""
    field: str
    problem: str = "missing"
    """'missing', or why the call cannot be answered (an invalid name, an unreadable file)."""

    def __iter__(self) -> Any:  # unpacks as (node, where, path, field)
        return iter((self.node, self.where, self.path, self.field))

    def describe(self) -> str:
        head = "" if self.node == "-" else f"node '{shown(self.node)}', "
        what = (
            f"{head}{self.where}: get_secret '{shown(self.path)}' field '{shown(self.field)}'"
        )
        if self.problem == "short":
            return (f"{what} is too short to be masked (under {MIN_SHOWN} characters): logs "
                    "and outputs may show it; store a longer value")
        if self.problem != "missing":
            return f"{what}: {self.problem}"
        return f"{what} is not in orch's secret store"


def _where(path: tuple[Any, ...]) -> tuple[str, str]:
    """(node, where) of a place in a model's dict."""
    if len(path) >= 2 and path[0] == "nodes":
        node, rest = str(path[1]), list(path[2:])
    else:
        node, rest = "-", list(path)
    words = {"properties": "property", "attributes": "attribute", "outputs": "output",
             "inputs": "input", "capabilities": "capability", "relationships": "relationship",
             "policies": "policy", "requirements": "requirement"}  # fmt: skip
    if len(rest) >= 5 and rest[0] == "interfaces" and rest[3] == "inputs":
        where = f"input {rest[4]} of {rest[1]}.{rest[2]}"
        tail = rest[5:]
    elif len(rest) >= 2 and rest[0] in words:
        where = f"{words[rest[0]]} {rest[1]}"
        tail = rest[2:]
        if rest[0] == "outputs" and tail[:1] == ["value"]:
            tail = tail[1:]
    else:
        where, tail = ".".join(map(str, rest)) or "value", []
    tail = [t for t in tail if not (isinstance(t, str) and t.startswith("get_"))]
    if tail:
        where += " (" + ".".join(map(str, tail)) + ")"
    return node, where


def secret_calls(value: Any, path: tuple[Any, ...] = ()) -> Iterable[tuple[tuple[Any, ...], Any]]:
    """(place, arguments) of every get_secret call in ``value``, at any depth."""
    if isinstance(value, Mapping):
        if len(value) == 1:
            ((name, args),) = value.items()
            if name in FUNCTIONS:
                yield path, args
                return
        for key, item in value.items():
            yield from secret_calls(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from secret_calls(item, (*path, i))


def _plain(value: Any, inputs: Mapping[str, Any]) -> Any:
    """A call's argument as a literal: itself, or the value of ``{get_input: name}`` when the
    input is known; None when it is known only at run time."""
    if isinstance(value, Mapping):
        if len(value) == 1 and "get_input" in value and inputs:
            name = value["get_input"]
            name = name[0] if isinstance(name, list) and len(name) == 1 else name
            if isinstance(name, str) and isinstance(inputs.get(name), str):
                return inputs[name]
        return None
    return value


def missing_secrets(
    topology: Any, inputs: Mapping[str, Any] | None = None, store: SecretStore | None = None,
    *, short: list[Missing] | None = None,
) -> list[Missing]:  # fmt: skip
    """Every get_secret call of ``topology`` (a ``Model``, a model's dict or any value) whose
    secret orch's store cannot give, as (node, where, path, field). Calls whose path or options
    are known only at run time (other functions than ``get_input``) are left to the run.
    ``short`` collects the calls whose value is too short to be masked (see ``masking``)."""
    from orch.executors.masking import maskable

    store = store if store is not None else SecretStore.default()
    data = topology.to_dict() if hasattr(topology, "to_dict") else topology
    found: list[Missing] = []
    seen: set[tuple[str, str, str, str]] = set()
    for place, args in secret_calls(data):
        items = args if isinstance(args, list) else [args]
        literal = [_plain(a, inputs or {}) for a in items]
        if not literal or any(a is None for a in literal):
            continue
        node, where = _where(place)
        path = literal[0]
        field = DEFAULT_FIELD
        try:
            field = field_of(literal[1:])
            if not maskable(store.get(path, field)) and short is not None:
                short.append(Missing(node, where, str(path), field, "short"))
            continue
        except SecretMissing:
            problem = "missing"
        except SecretError as exc:
            problem = str(exc)
        key = (node, where, str(path), field)
        if key not in seen:
            seen.add(key)
            found.append(Missing(node, where, str(path), field, problem))
    return found


def missing_message(missing: list[Missing], verb: str = "deploy") -> str:
    """What to tell the user (never a value): each call, then the commands that fix it."""
    lines = [f"{verb} needs {len(missing)} secret(s) that orch cannot give; nothing ran:"]
    lines += [f"  {m.describe()}" for m in missing]
    commands = []
    for m in missing:
        if m.problem != "missing":
            continue
        with contextlib.suppress(SecretError):
            command = set_command(normalise_path(m.path), m.field)
            if command not in commands:
                commands.append(command)
    if commands:
        lines.append("store each (the value is read from standard input, never the command line):")
        lines += [f"  {shown(c, 400)}" for c in commands]
    return "\n".join(lines)


__all__ = [
    "DEFAULT_FIELD", "HIDDEN", "Entry", "Missing", "SecretError", "SecretMissing", "SecretStore",
    "field_of",
    "lookup", "missing_message", "missing_secrets", "normalise_path", "value_from_bytes",
    "write_atomic",
]  # fmt: skip
