"""YAML files to plain data, with positions found on demand.

Two parse paths give the same data model (YAML 1.2 core schema: ``yes`` is a string, plain
``1.10`` is a float that remembers its text, duplicate keys are errors):

* the fast path parses with rapidyaml (C++) and converts the whole tree through its JSON emitter
  and the C JSON decoder, so no Python code runs per node; positions are looked up afterwards, only
  for the diagnostics that are reported, by walking the rapidyaml tree along a path and turning a
  scalar's byte offset into line and column;
* the reference path composes with PyYAML and resolves scalars itself. It is used whenever the
  source holds something the fast path cannot reproduce exactly (tags, ``~``, ``True``, hex ints,
  duplicate keys, syntax errors), so the fast path never changes a result, only its speed.

Hostile input is bounded before it costs anything: only regular files are read, and at most a
cap of bytes (``read_regular``); aliases may add at most ``MAX_ALIAS_NODES`` nodes to what is
written (a "billion laughs" document is refused before it is expanded); integers longer than
``MAX_INT_DIGITS`` are a diagnostic, not a crash of Python's int().
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import errno
import gc
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orch.tosca.diagnostics import Diagnostic, Location, Path, Severity


class YamlFloat(float):
    """A float that keeps the text it was written as (``version: 1.10`` must stay "1.10")."""

    text: str

    def __new__(cls, text: str) -> YamlFloat:
        self = super().__new__(cls, text.replace("_", ""))
        self.text = text
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (YamlFloat, (self.text,))


def scalar_text(value: Any) -> str:
    """The text a plain scalar was written as: the form string-like TOSCA types want."""
    if isinstance(value, YamlFloat):
        return value.text
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


# --------------------------------------------------------------------------------------------
# reading files: regular files only, never more than a cap
MIB = 1024 * 1024
MAX_BLUEPRINT_BYTES = 64 * MIB
"""A blueprint, an imported file or a CSAR member (a generated 5000-node template is 6 MB)."""
MAX_INPUTS_BYTES = 16 * MIB
"""An inputs file (``-i inputs.yaml``)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not block open()
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class FileRefused(OSError):
    """A file orch does not read: not a regular file, or larger than the cap for its kind.

    An ``OSError`` whose ``strerror`` says why, so every reader's "cannot read X: why" message
    explains it without a special case.
    """


def size_text(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


def _check_regular(mode: int, size: int, limit: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise FileRefused(errno.EINVAL, f"it is {kind}; {what} must be a regular file")
    if size > limit:
        raise FileRefused(
            errno.EFBIG, f"it is larger than {size_text(limit)}, the most orch reads for {what}"
        )


def require_regular(path: str | os.PathLike[str], what: str = "a file") -> None:
    """Raise ``FileRefused`` unless ``path`` is a regular file (for readers that open it
    themselves, such as zipfile)."""
    _check_regular(os.stat(path).st_mode, 0, 0, what)


def read_regular(
    path: str | os.PathLike[str], limit: int, what: str = "a file", *, head: bool = False
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    A FIFO, a device, a socket or a directory is refused before it is opened (``/dev/zero``
    would never end, a FIFO would block forever), and again after (the name may have been
    swapped meanwhile: the file opened is what counts). Reads at most ``limit`` + 1 bytes, so
    a file that grows while read is refused too; with ``head``, a larger file gives its first
    ``limit`` bytes instead. Raises ``OSError`` (``FileRefused`` for these refusals).
    """
    cap = sys.maxsize if head else limit
    info = os.stat(path)
    _check_regular(info.st_mode, info.st_size, cap, what)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        _check_regular(info.st_mode, info.st_size, cap, what)
        parts: list[bytes] = []
        total = 0
        want = min(info.st_size, limit) + 1  # one read for a file that keeps its size
        while total <= limit:
            chunk = os.read(fd, max(want - total, 65536))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if total > limit:
        if head:
            return data[:limit]
        _check_regular(stat.S_IFREG, total, limit, what)
    return data


# --------------------------------------------------------------------------------------------
# YAML 1.2 core schema resolution of plain scalars (reference path)
_INT10 = re.compile(r"[-+]?[0-9]+\Z")
_INT8 = re.compile(r"0o[0-7]+\Z")
_INT16 = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})


MAX_INT_DIGITS = 4300
"""Longest integer read, in decimal digits: Python's own limit for int <-> str conversions
(``sys.int_info.default_max_str_digits``), past which int() and str() raise; a larger integer
would crash whatever prints or stores it later."""
_MAX_INT_BITS = 14_280  # 2**14280 < 10**4300: hex and octal integers printable in decimal


class IntTooLarge(ValueError):
    """An integer scalar longer than ``MAX_INT_DIGITS``."""


def resolve_plain(text: str) -> Any:
    """Type a plain (unquoted) scalar as YAML 1.2's core schema does.

    Raises ``IntTooLarge`` for an integer of more than ``MAX_INT_DIGITS`` digits."""
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT10.match(text):
            if len(text) - (first in "+-") > MAX_INT_DIGITS:
                raise IntTooLarge(text)
            return int(text)
        if _FLOAT.match(text):
            return YamlFloat(text)
        if _INF.match(text) or _NAN.match(text):
            return YamlFloat(text.lower().replace(".", ""))
    if first == "0":
        if _INT8.match(text):
            return _bounded(int(text[2:], 8), text)
        if _INT16.match(text):
            return _bounded(int(text[2:], 16), text)
    return text


def _bounded(value: int, text: str) -> int:
    """Base 8 and 16 parse in linear time; only the result's size matters."""
    if value.bit_length() > _MAX_INT_BITS:
        raise IntTooLarge(text)
    return value


# --------------------------------------------------------------------------------------------
@dataclass
class LoadedFile:
    """One parsed YAML file: its data and the means to place any path of it in the source."""

    path: str
    raw: bytes = field(repr=False)
    data: Any
    _locate: Callable[[Path, bool], tuple[int, int] | None] = field(repr=False)
    warnings: list[Diagnostic] = field(default_factory=list)
    quotable: bool = True
    """Whether diagnostics may show its lines: False for a file that is not TOSCA (a blueprint
    that imports /etc/shadow must not get its lines printed)."""

    @property
    def text(self) -> str:
        """The source as text; decoded on demand (diagnostics need it, the clean path not)."""
        return self.raw.decode("utf-8-sig", "replace")

    def head(self, size: int = 4096) -> str:
        return self.raw[:size].decode("utf-8-sig", "replace")

    def location(self, path: Path = (), *, key: bool = False) -> Location:
        """Where ``path`` is written; with ``key`` the mapping key itself rather than its value.

        Falls back to the nearest enclosing node that exists, so a diagnostic about a missing
        key points at the mapping that lacks it.
        """
        for cut in range(len(path), -1, -1):
            found = self._locate(path[:cut], key and cut == len(path))
            if found is not None:
                return Location(self.path, found[0], found[1])
        return Location(self.path, 1, 1)

    def line_text(self, line: int) -> str | None:
        """The text of ``line`` ("" past the end); None for a file that must not be quoted."""
        if not self.quotable:
            return None
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""


class YamlError(Exception):
    """The file is not YAML the validator can read; carries a ready diagnostic."""

    raw: bytes = b""
    """The source, for callers that decide whether the messages may quote it."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def load_file(
    path: str, limit: int = MAX_BLUEPRINT_BYTES, what: str = "a blueprint file"
) -> LoadedFile:
    """Read and parse one regular file of at most ``limit`` bytes. Raises ``YamlError`` (with
    a diagnostic) or ``OSError`` (``FileRefused``: not a regular file, too large)."""
    return load_bytes(read_regular(path, limit, what), path)


def load_bytes(raw: bytes, path: str) -> LoadedFile:
    """Parse ``raw`` (the bytes of ``path``). Raises ``YamlError`` with its diagnostics."""
    try:
        return _load_bytes(raw, path)
    except YamlError as exc:
        exc.raw = raw
        raise


def _load_bytes(raw: bytes, path: str) -> LoadedFile:
    try:
        raw.decode("utf-8")  # validates only; the text is decoded again on demand
    except UnicodeDecodeError as exc:
        raise YamlError(
            Diagnostic(
                "yaml.encoding",
                Severity.ERROR,
                f"file is not UTF-8 text (byte {exc.start})",
                Location(path, 1, 1),
                "save the file as UTF-8",
            )
        ) from None
    try:
        if not _needs_reference_path(raw):
            fast = _load_fast(raw, path)
            if fast is not None:
                return fast
        return _load_reference(raw, path)
    except RecursionError:
        raise YamlError(
            Diagnostic(
                "yaml.too-deep",
                Severity.ERROR,
                "the document nests collections too deeply to be read",
                Location(path, 1, 1),
                "flatten the structure; TOSCA documents need far less nesting",
            )
        ) from None


# --------------------------------------------------------------------------------------------
# fast path: rapidyaml
# What the fast path cannot reproduce exactly: tags, anchors, aliases and merge keys, and plain
# scalars whose rapidyaml/JSON typing differs from YAML 1.2 core. Found with bytes.find (memchr
# speed) and a look at the neighbouring bytes; a false positive only costs speed.
_SIGILS = (b"!", b"&", b"*", b"<<", b"@", b"`")
_WORDS = (
    b"~",
    b"True",
    b"TRUE",
    b"False",
    b"FALSE",
    b"Null",
    b"NULL",
    b".inf",
    b".Inf",
    b".INF",
    b".nan",
    b".NaN",
    b".NAN",
    b"inf",
    b"nan",
    b"0x",
    b"0o",
)
_BEFORE = frozenset(b" \t\n\r[{,:-+")
_AFTER = frozenset(b" \t\n\r,]}#")


def _needs_reference_path(raw: bytes) -> bool:
    find = raw.find
    for sigil in _SIGILS:
        pos = find(sigil)
        while pos >= 0:
            if pos == 0 or raw[pos - 1] in _BEFORE:
                return True
            pos = find(sigil, pos + 1)
    size = len(raw)
    for word in _WORDS:
        pos = find(word)
        while pos >= 0:
            end = pos + len(word)
            if (pos == 0 or raw[pos - 1] in _BEFORE) and (
                end >= size or raw[end] in _AFTER or word in (b"0x", b"0o")
            ):
                return True
            pos = find(word, end)
    # plain numbers with leading zeros (017): rapidyaml keeps them as text, YAML 1.2 reads ints
    for lead in (b" 0", b"[0"):
        pos = find(lead)
        while pos >= 0:
            end = pos + 2
            if lead == b"[0" or (pos > 0 and raw[pos - 1] in b":-,[{"):
                while end < size and 48 <= raw[end] <= 57:
                    end += 1
                if end > pos + 2 and (end >= size or raw[end] in _AFTER):
                    return True
            pos = find(lead, end)
    return False


class _Duplicate(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


def _load_fast(raw: bytes, path: str) -> LoadedFile | None:
    try:
        import ryml
    except ImportError:  # pragma: no cover - rapidyaml is a dependency, but stay usable without
        return None
    buffer = bytearray(raw)
    tree = ryml.Tree()
    _reserve(tree, raw)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the decoder allocates only acyclic containers; the collector just slows it
    try:
        with _quiet_stderr():
            ryml.parse_in_place(buffer, tree)
        if tree.size() <= 1 or tree.is_stream(tree.root_id()):
            return None  # empty or multi-document: let the reference path explain it
        with _quiet_stderr():  # its emitter also complains on stderr about deep nesting
            emitted = ryml.emit_json(tree)
        del tree, buffer  # free the C++ tree before the Python objects are built: lower peak
        data = json.loads(emitted, object_pairs_hook=_pairs_hook, parse_float=YamlFloat)
    except Exception:  # any disagreement: the reference path decides, with exact messages
        return None
    finally:
        if gc_was_enabled:
            gc.enable()
    locator = _RymlLocator(raw)
    return LoadedFile(path, raw, data, locator.locate)


def _reserve(tree: Any, raw: bytes) -> None:
    """Growing the tree copies it: reserve about two nodes per line up front."""
    tree.reserve(raw.count(b"\n") * 2 + 64)
    tree.reserve_arena(len(raw) // 4 + 64)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """rapidyaml's C++ error handler writes to fd 2 before raising; we report errors ourselves."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def _address(obj: Any) -> int:
    """Start address of a buffer (rapidyaml hands scalars out as views into our buffer)."""
    view = _PyBuffer()
    ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(obj), ctypes.byref(view), 0)
    try:
        return int(view.buf or 0)
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(view))


class _RymlLocator:
    """Positions from a rapidyaml tree, parsed again only when a diagnostic asks for one."""

    def __init__(self, raw: bytes):
        self.raw = raw  # the bytes as written, for line and column
        self._tree: Any = None
        self._line_starts: list[int] | None = None

    @property
    def tree(self) -> Any:
        if self._tree is None:
            import ryml

            self.buffer = bytearray(self.raw)  # parsed in place: scalars get unescaped in it
            tree = ryml.Tree()
            _reserve(tree, self.raw)
            with _quiet_stderr():
                ryml.parse_in_place(self.buffer, tree)
            self.base = _address(self.buffer)
            self._tree = tree
        return self._tree

    def _offset_to_position(self, offset: int) -> tuple[int, int]:
        if self._line_starts is None:
            starts = [0]
            find = self.raw.find
            pos = find(b"\n")
            while pos >= 0:
                starts.append(pos + 1)
                pos = find(b"\n", pos + 1)
            self._line_starts = starts
        line = bisect.bisect_right(self._line_starts, offset)
        start = self._line_starts[line - 1]
        col = len(self.raw[start:offset].decode("utf-8", "replace")) + 1
        return line, col

    def _span_offset(self, view: Any) -> int | None:
        if view is None or len(view) == 0:
            return None
        offset = _address(view) - self.base
        if 0 <= offset < len(self.raw):
            return offset
        return None  # a scalar rewritten into rapidyaml's arena (escapes, folding)

    def _node_offset(self, node: int, key: bool) -> int | None:
        tree = self.tree
        if key and tree.has_key(node):
            offset = self._span_offset(tree.key(node))
            if offset is not None:
                return offset - (1 if tree.is_key_quoted(node) else 0)
        if tree.has_val(node) and not tree.is_container(node):
            offset = self._span_offset(tree.val(node))
            if offset is not None:
                return offset - (1 if tree.is_val_quoted(node) else 0)
        if tree.has_key(node):
            offset = self._span_offset(tree.key(node))
            if offset is not None:
                return offset - (1 if tree.is_key_quoted(node) else 0)
        child = tree.first_child(node) if tree.is_container(node) else -1
        while child is not None and child >= 0 and child != _NONE:
            offset = self._node_offset(child, True)
            if offset is not None:
                return offset
            child = tree.next_sibling(child)
        return None

    def locate(self, path: Path, key: bool) -> tuple[int, int] | None:
        tree = self.tree
        node = tree.root_id()
        for item in path:
            if isinstance(item, int):
                if not tree.is_seq(node) or item >= tree.num_children(node):
                    return None
                node = tree.child(node, item)
            else:
                if not tree.is_map(node):
                    return None
                node = tree.find_child(node, item.encode())
                if node == _NONE:
                    return None
        offset = self._node_offset(node, key)
        return None if offset is None else self._offset_to_position(offset)


_NONE = 2**64 - 1
try:  # the sentinel rapidyaml uses for "no node"
    import ryml as _ryml_module

    _NONE = _ryml_module.NONE
except ImportError:  # pragma: no cover
    pass


# --------------------------------------------------------------------------------------------
# reference path: PyYAML events, our own YAML 1.2 resolution, positions on every node
def _load_reference(raw: bytes, path: str) -> LoadedFile:
    import yaml

    text = raw.decode("utf-8-sig")
    try:
        loader = _loader_class()(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise YamlError(_yaml_error_diagnostic(exc, path, text)) from None
    except yaml.YAMLError as exc:
        raise YamlError(
            Diagnostic("yaml.syntax", Severity.ERROR, str(exc), Location(path, 1, 1))
        ) from None
    if node is not None and "*" in text:  # no alias, nothing shared: nothing to expand
        _refuse_alias_bombs(node, text, path)
    positions: dict[Path, tuple[int, int, int, int]] = {}
    duplicates: list[Diagnostic] = []
    data = None if node is None else _construct(node, (), positions, duplicates, path, set())
    errors = [d for d in duplicates if d.severity is Severity.ERROR]
    if errors:
        raise YamlError(errors[0]) if len(errors) == 1 else _MultiYamlError(errors)

    def locate(p: Path, key: bool) -> tuple[int, int] | None:
        found = positions.get(p)
        if found is None:
            return None
        return (found[0], found[1]) if key else (found[2], found[3])

    return LoadedFile(path, raw, data, locate, duplicates)


MAX_ALIASES = 100_000
"""Most alias uses in one document (a generated template may share a definition per node)."""
MAX_ALIAS_NODES = 1_000_000
"""Most nodes (scalars and collections) that aliases may add to a document once expanded.

An alias stands for a copy of its anchor's whole content, and anchors may hold aliases: nine
levels of nine aliases expand 100 bytes into 9**9 nodes (the "billion laughs" document). The
composed document shares those nodes; its expanded size is measured on the shared nodes, in
time linear in what is written, and a document over the bound is refused before anything is
copied. 1,000,000 nodes cost about 1 s and 200 MB to build, far beyond what a TOSCA file shares.
"""


class _AliasBomb(Exception):
    pass


def _refuse_alias_bombs(root: Any, text: str, path: str) -> None:
    """Raise ``YamlError`` (yaml.alias-bomb) when aliases expand the document too far."""
    import yaml

    known: dict[int, int] = {}  # node id -> expanded size; -1 while the node is being measured
    aliases = added = 0

    def size(node: Any) -> int:
        nonlocal aliases, added
        seen = known.get(id(node))
        if seen is not None:  # met before: this is an alias use (a cycle counts 1)
            grown = max(seen, 1)
            aliases += 1
            added += grown
            if aliases > MAX_ALIASES:
                raise _AliasBomb(f"more than {MAX_ALIASES:,} aliases")
            if added > MAX_ALIAS_NODES:
                raise _AliasBomb(f"aliases that expand to more than {MAX_ALIAS_NODES:,} nodes")
            return grown
        if isinstance(node, yaml.ScalarNode):
            known[id(node)] = 1
            return 1
        known[id(node)] = -1
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        else:
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        known[id(node)] = total
        return total

    try:
        size(root)
    except _AliasBomb as exc:
        line, col = _bomb_position(text)
        raise YamlError(
            Diagnostic(
                "yaml.alias-bomb",
                Severity.ERROR,
                f"the document holds {exc}: refused before expanding them (this alias "
                "crosses the bound)",
                Location(path, line, col),
                "each alias copies its anchor's whole content, and nested aliases multiply "
                "it: write the data out, or alias fewer levels",
            )
        ) from None


def _bomb_position(text: str) -> tuple[int, int]:
    """Where the alias that crosses the bounds is written: the same count as
    ``_refuse_alias_bombs``, over parse events (which keep each alias's position)."""
    import yaml

    anchors: dict[str, int] = {}
    open_sizes: list[list[Any]] = []  # [anchor, size] of each collection being read
    aliases = added = 0
    loader = _loader_class()(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            grown = 0
            if isinstance(event, yaml.AliasEvent):
                grown = anchors.get(event.anchor, 1)
                aliases += 1
                added += grown
                if aliases > MAX_ALIASES or added > MAX_ALIAS_NODES:
                    return event.start_mark.line + 1, event.start_mark.column + 1
            elif isinstance(event, yaml.ScalarEvent):
                grown = 1
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                open_sizes.append([event.anchor, 1])
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, grown = open_sizes.pop()
                if anchor:
                    anchors[anchor] = grown
            if grown and open_sizes:
                open_sizes[-1][1] += grown
    finally:
        loader.dispose()
    return 1, 1


class _MultiYamlError(YamlError):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0])
        self.diagnostics = diagnostics


def yaml_error_diagnostics(error: YamlError) -> list[Diagnostic]:
    return list(getattr(error, "diagnostics", [error.diagnostic]))


def as_error(diagnostic: Diagnostic) -> Diagnostic:
    """A loader warning (a duplicate key) as an error, for files whose values are used as
    they are (inputs, sites.yaml): there no value may silently win."""
    from dataclasses import replace

    message = diagnostic.message.split("; the last value wins")[0]
    return replace(diagnostic, severity=Severity.ERROR, message=message)


def _yaml_error_diagnostic(exc: Any, path: str, text: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.problem} ({exc.context})"
    hint = None
    lines = text.splitlines()
    nearby = lines[max(line - 2, 0) : line] if lines else []
    if "tab" in problem.lower() or any(t.startswith("\t") or "\t" in t[:8] for t in nearby):
        hint = "YAML indentation must use spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = "a value that contains ': ' must be quoted"
    return Diagnostic("yaml.syntax", Severity.ERROR, problem, Location(path, line, col), hint)


def _construct(
    node: Any,
    here: Path,
    positions: dict[Path, tuple[int, int, int, int]],
    duplicates: list[Diagnostic],
    path: str,
    active: set[int],
    key_mark: Any = None,
) -> Any:
    import yaml

    start = node.start_mark
    kmark = key_mark or start
    if key_mark is not None and (
        not isinstance(node, yaml.ScalarNode) or (node.value == "" and node.tag == _PLAIN_TAG)
    ):
        start = (
            key_mark  # collections and empty values are placed at their key, as on the fast path
        )
    positions[here] = (kmark.line + 1, kmark.column + 1, start.line + 1, start.column + 1)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, duplicates, path)
    if id(node) in active:
        duplicates.append(
            Diagnostic(
                "yaml.alias-cycle",
                Severity.ERROR,
                "recursive alias: the anchor refers to itself",
                Location(path, start.line + 1, start.column + 1),
            )
        )
        return None
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return [
                _construct(item, (*here, i), positions, duplicates, path, active)
                for i, item in enumerate(node.value)
            ]
        result: dict[Any, Any] = {}
        seen: dict[Any, Any] = {}
        for key_node, value_node in _merged_pairs(node):
            if isinstance(key_node, yaml.ScalarNode):
                key = _scalar(key_node, duplicates, path)
            else:  # a complex key ({a: 1}: x): keep readable text, as in the source
                key = _flow_text(_construct(key_node, (), {}, [], path, active))
            if not isinstance(key, str):
                key = scalar_text(key)
            if key in seen:
                # YAML 1.2 forbids it; most loaders (PyYAML, tosca-parser) keep the last value,
                # so do we, and warn: --strict turns it into a failure.
                mark = key_node.start_mark
                first = seen[key]
                duplicates.append(
                    Diagnostic(
                        "yaml.duplicate-key",
                        Severity.WARNING,
                        f"duplicate key '{key}' (first defined at line {first.line + 1}); "
                        "the last value wins",
                        Location(path, mark.line + 1, mark.column + 1),
                        "remove or rename one of them",
                        related=(Location(path, first.line + 1, first.column + 1),),
                    )
                )
            seen[key] = key_node.start_mark
            result[key] = _construct(
                value_node, (*here, key), positions, duplicates, path, active, key_node.start_mark
            )
        return result
    finally:
        active.discard(id(node))


def _flow_text(value: Any) -> str:
    """A value in YAML flow style, for complex mapping keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_text(v) for v in value) + "]"
    return scalar_text(value) if not isinstance(value, str) else value


def _merged_pairs(node: Any) -> list[tuple[Any, Any]]:
    """Mapping pairs with YAML merge keys (``<<: *anchor``) expanded, explicit keys winning."""
    import yaml

    own = [(k, v) for k, v in node.value if not (k.value == "<<" and k.tag == _PLAIN_TAG)]
    merged: list[tuple[Any, Any]] = []
    for key_node, value_node in node.value:
        if key_node.value != "<<" or key_node.tag != _PLAIN_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                merged.extend(_merged_pairs(source))
    own_keys = {k.value for k, _ in own if isinstance(k.value, str)}
    taken: set[str] = set()
    inherited = []
    for k, v in merged:
        if not isinstance(k.value, str):
            inherited.append((k, v))
        elif k.value not in own_keys and k.value not in taken:
            taken.add(k.value)
            inherited.append((k, v))
    return inherited + own


_PLAIN_TAG = "tag:orch,plain"
_STR_TAG = "tag:yaml.org,2002:str"


def _loader_class() -> Any:
    """PyYAML's (C) loader with YAML 1.1 implicit typing replaced: we resolve plain scalars."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            if kind is yaml.ScalarNode:
                if implicit[0]:
                    return _PLAIN_TAG
                if implicit[1]:
                    return _STR_TAG
            return super().resolve(kind, value, implicit)

    return Loader


def _scalar(node: Any, problems: list[Diagnostic], path: str) -> Any:
    """A scalar's value; an integer too large for Python is an error at the scalar (its text
    is kept so that loading goes on and reports everything)."""
    try:
        return _construct_scalar(node)
    except IntTooLarge:
        mark = node.start_mark
        problems.append(
            Diagnostic(
                "yaml.int-too-large",
                Severity.ERROR,
                f"integer of {len(node.value):,} characters; orch reads integers of at most "
                f"{MAX_INT_DIGITS} digits",
                Location(path, mark.line + 1, mark.column + 1),
                "quote it to keep it as text",
            )
        )
        return node.value


def _construct_scalar(node: Any) -> Any:
    tag = node.tag
    if tag == _PLAIN_TAG:
        return resolve_plain(node.value)
    if tag == _STR_TAG or not tag.startswith("tag:yaml.org,2002:"):
        return node.value  # quoted, !!str, or an application tag (kept as text)
    return _explicit(tag, node.value)


def _explicit(tag: str, value: str) -> Any:
    kind = tag.rsplit(":", 1)[-1]
    resolved = resolve_plain(value)
    if kind == "str":
        return value
    if kind == "int" and isinstance(resolved, int) and not isinstance(resolved, bool):
        return resolved
    if kind == "float" and isinstance(resolved, (int, float)) and not isinstance(resolved, bool):
        return YamlFloat(value)
    if kind == "bool" and isinstance(resolved, bool):
        return resolved
    if kind == "null":
        return None
    return value
