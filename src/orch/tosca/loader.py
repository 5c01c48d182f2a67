"""YAML files to plain data, with positions found on demand.

Two parse paths give the same data model (YAML 1.2 core schema: ``yes`` is a string, plain
``1.10`` is a float that remembers its text, duplicate keys are errors):

* the fast path parses with rapidyaml (C++) and converts the whole tree through its JSON emitter
  and the C JSON decoder, so no Python code runs per scalar (one call per mapping checks that its
  keys differ); positions are looked up afterwards, only for the diagnostics that are reported,
  by walking the rapidyaml tree along a path and turning a scalar's byte offset into line and
  column;
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
import errno
import gc
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
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
class LazyPattern:
    """A regular expression compiled on its first use (``match``, ``search``, ``finditer``...).
    Compiling takes Python code a tenth of a millisecond per expression, at every start: a
    blueprint read by the fast path never needs the reference path's, nor most of the fast
    path's own scans."""

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._source = (pattern, flags)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        compiled = re.compile(*self._source)
        for method in ("match", "search", "finditer"):
            setattr(self, method, getattr(compiled, method))  # later calls go straight there
        return getattr(compiled, name)


# YAML 1.2 core schema resolution of plain scalars (reference path)
_INT10 = LazyPattern(r"[-+]?[0-9]+\Z")
_INT8 = LazyPattern(r"0o[0-7]+\Z")
_INT16 = LazyPattern(r"0x[0-9a-fA-F]+\Z")
_FLOAT = LazyPattern(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = LazyPattern(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = LazyPattern(r"\.(nan|NaN|NAN)\Z")
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
    """Problems found while reading that leave the data usable, to be reported with the
    file's other diagnostics: duplicate keys, errors (the last value is kept)."""
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


DUPLICATE_KEY = "yaml.duplicate-key"
"""The rule of a key written twice in one mapping: an error that leaves the file readable."""


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
# scalars that rapidyaml and the JSON decoder type (or rewrite) otherwise than YAML 1.2's core
# schema does: ``True``, ``~``, ``017``, ``0x1F``, ``0e5``, ``.inf``, ``inf`` (rapidyaml writes
# ``.inf``), ``3.`` and ``.5`` (it writes ``3.0`` and ``0.5``), and keys such as ``null:``,
# ``+5:`` or ``-0:`` (YAML 1.2 makes them "", "5" and "0"). Each kind of such a scalar begins
# with one byte; each gets one scan, by memchr while that byte is rare in the file, else by a
# regular expression that starts with it (C speed). A false positive only costs speed.
_NOT_START = rb"[^ \t\n\r\[{,]"  # a plain scalar starts after one of these bytes, or at 0
_END = rb"(?=[ \t\n\r,\]}#:]|\Z)"  # ... and ends before one of these (or a key's colon)


def _starts(width: int) -> bytes:
    """Lookbehind, after ``width`` matched bytes: they begin a plain scalar (the byte before
    is a separator or there is none, or a JSON-like key's quote and colon: ``{"a":017}``)."""
    dots = b"." * width
    return rb"(?:(?<!" + _NOT_START + dots + rb")|(?<=[\"']:" + dots + rb"))"


def _starts_signed(width: int) -> bytes:
    """As ``_starts``, or after a sign that begins the scalar (``-017``, ``-.5``)."""
    sign = rb"(?<=[-+]" + b"." * width + rb")"
    return rb"(?:" + _starts(width) + rb"|" + sign + _starts(width + 1) + rb")"


def _whole_number_before(raw: bytes, match: re.Match[bytes]) -> bool:
    """Whether the '.' matched ends a plain scalar of digits (``3.``, ``-5.e3``) written as a
    value or key, not as the last word of a sentence ("at most 8.")."""
    pos = match.start() - 1
    while pos >= 0 and 48 <= raw[pos] <= 57:
        pos -= 1
    if pos >= 0 and raw[pos] in b"-+":
        pos -= 1
    if pos < 0 or raw[pos] in b"\n\r[{,":
        return True
    if raw[pos] in b" \t":
        return pos == 0 or raw[pos - 1] in b":-,[{ \t\n\r"
    return raw[pos] == 58 and pos > 0 and raw[pos - 1] in b"\"'"  # {"a":3.}


def _zero_starts_scalar(raw: bytes, match: re.Match[bytes]) -> bool:
    """Whether the '0' matched begins a plain scalar: not after a thousands separator in block
    text (``1,000 nodes``), where a comma separates nothing; in a flow collection on the same
    line (``[1,017]``) it does."""
    pos = match.start()
    if pos < 2 or raw[pos - 1] != 44 or not 48 <= raw[pos - 2] <= 57:  # not "<digit>,0"
        return True
    group = raw[pos : pos + 4]
    if not (group[:3].isdigit() and not group[3:].isdigit()):
        return True
    line = raw.rfind(b"\n", 0, pos) + 1
    return raw.find(b"[", line, pos) >= 0 or raw.find(b"{", line, pos) >= 0


def _scan(first: bytes, pattern: bytes, verify: Any = None) -> tuple[bytes, LazyPattern, Any]:
    return first, LazyPattern(pattern, re.DOTALL), verify


_N_WORDS = b"|".join([
    rb"an" + _starts_signed(3) + _END,  # nan, -nan: rapidyaml writes .nan
    rb"ull" + _starts(4) + rb"(?=:)",  # null as a key is "" in YAML 1.2
    rb"(?<=in)f" + _starts_signed(3) + _END,  # inf, -inf: rapidyaml writes .inf
])  # fmt: skip
_ZEROS = b"|".join([
    rb"(?=[0-9xoeE])" + _starts_signed(1),  # 017, 0x1F, 0o17, 0e5, -017
    rb"(?<=-0)(?=:)" + _starts(2),  # -0 as a key is "0" in YAML 1.2
])  # fmt: skip
_DOTS = b"|".join([
    rb"(?<=[0-9]\.)(?:[eE]|" + _END + rb")",  # 3. and 3.e5 (checked by _whole_number_before)
    rb"(?=[0-9])" + _starts_signed(1),  # .5, -.5
    rb"(?=[iInN][nNaA][fFnN]" + _END + rb")(?:inf|Inf|INF|nan|NaN|NAN)" + _starts_signed(4),
])  # fmt: skip
_SCANS: tuple[tuple[bytes, LazyPattern, Any], ...] = (
    *(_scan(sigil, re.escape(sigil) + _starts(1)) for sigil in (b"!", b"&", b"*", b"@", b"`")),
    _scan(b"<", rb"<<" + _starts(2)),
    _scan(b"~", rb"~" + _starts(1) + _END),
    _scan(b"T", rb"T(?:rue|RUE)" + _starts(4) + _END),
    _scan(b"F", rb"F(?:alse|ALSE)" + _starts(5) + _END),
    _scan(b"N", rb"N(?:ull|ULL)" + _starts(4) + _END),
    _scan(b"+", rb"\+" + _starts(1) + rb"[0-9.iInN]"),  # +5 as a key is "5"
    _scan(b"n", rb"n(?=[auf])(?:" + _N_WORDS + rb")"),
    _scan(b"0", rb"0(?:" + _ZEROS + rb")", _zero_starts_scalar),
    _scan(b".", rb"\.(?:" + _DOTS + rb")", _whole_number_before),
)
_MEMCHR_TRIES = 8
"""Hits of a scan's first byte checked one by one (memchr) before its expression takes over."""


def _needs_reference_path(raw: bytes) -> bool:
    """Whether ``raw`` may hold something the fast path would read otherwise than YAML 1.2."""
    return any(_found(raw, *scan) for scan in _SCANS)


def _found(raw: bytes, first: bytes, pattern: LazyPattern, verify: Any) -> bool:
    find = raw.find
    pos = find(first)
    for _ in range(_MEMCHR_TRIES):
        if pos < 0:
            return False
        match = pattern.match(raw, pos)  # its lookbehinds see the bytes before pos
        if match is not None and (verify is None or verify(raw, match)):
            return True
        pos = find(first, pos + 1)
    if pos < 0:
        return False
    return any(verify is None or verify(raw, m) for m in pattern.finditer(raw, pos))


# rapidyaml's compiled module, imported without its Python wrapper ``ryml``: the wrapper
# imports ``deprecation`` and ``packaging`` (a tenth of a small run's start-up) for names the
# fast path does not use. Its flat functions (``Tree_size(tree)``) are what ``ryml.Tree``
# calls; what the wrapper does besides, for the objects the fast path meets, is done here.
_RYML_EXT: Any = None


def _ryml_ext() -> Any:
    """``ryml._ryml``, loaded once (None without rapidyaml)."""
    global _RYML_EXT
    if _RYML_EXT is None:
        _RYML_EXT = _load_ryml_ext() or False
    return _RYML_EXT or None


def _load_ryml_ext() -> Any:
    if "ryml" not in sys.modules:
        with contextlib.suppress(ImportError, OSError, AttributeError, IndexError, ValueError):
            return _register_classes(sys.modules.get("ryml._ryml") or _import_ryml_ext())
    try:  # the wrapper is there already, or this rapidyaml is laid out otherwise
        from ryml import ryml as wrapper

        return wrapper._ryml
    except (ImportError, AttributeError):
        return None


def _import_ryml_ext() -> Any:
    from importlib import machinery, util

    spec = util.find_spec("ryml")  # finds the package without running its __init__
    folder = spec.submodule_search_locations[0]  # type: ignore[union-attr, index]
    for suffix in machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_ryml" + suffix)
        if os.path.isfile(path):
            loader = machinery.ExtensionFileLoader("ryml._ryml", path)
            module = util.module_from_spec(util.spec_from_loader("ryml._ryml", loader))
            loader.exec_module(module)
            sys.modules["ryml._ryml"] = module  # `import ryml` later reuses it
            return module
    raise ImportError("rapidyaml's compiled module is not beside its package")


def _register_classes(ext: Any) -> Any:
    """Give SWIG a class with a destructor for each rapidyaml object the fast path meets, as
    the wrapper does: without one it cannot free a tree (nor an exception: it then raises
    RuntimeError) and, when the object goes, prints a leak warning on stdout. (``import
    ryml`` later registers its own classes in their place.)"""

    def register(name: str, *bases: type) -> type:
        kind = type(name, bases, {"__swig_destroy__": getattr(ext, "delete_" + name)})
        getattr(ext, name + "_swigregister")(kind)
        return kind

    register("Tree", object)
    basic = register("ExceptionBasic", Exception)
    register("ExceptionParse", basic)
    register("ExceptionVisit", basic)
    return ext


class _Duplicate(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each JSON object as a dict; a key written twice sends the file to the reference path,
    which reports it. (A fifth of the fast path's cost, but nothing in the C decoder, nor in
    rapidyaml, tells a mapping's keys apart more cheaply.)"""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


class _FlatTree:
    """A rapidyaml tree driven through the compiled module's flat functions: ``tree.key(n)``
    calls ``Tree_key(tree, n)``, as ``ryml.Tree`` does; the C++ tree goes with it."""

    def __init__(self, ext: Any) -> None:
        self._ext = ext
        self.handle = ext.new_Tree()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "handle":
            raise AttributeError(name)
        method = partial(getattr(self._ext, "Tree_" + name), self.handle)
        setattr(self, name, method)  # the next call is a plain attribute lookup
        return method

    def parse(self, buffer: bytearray, raw: bytes) -> None:
        """Parse ``buffer`` (a copy of ``raw``) in place."""
        # growing copies the tree; a TOSCA file holds a node per 16 to 20 bytes (counting its
        # lines would cost a pass over the bytes)
        self.reserve(len(raw) // 16 + 64)
        self.reserve_arena(len(raw) // 4 + 64)
        _quietly(self._ext.parse_substr, buffer, self.handle)


def _quietly(function: Callable[..., Any], *args: Any) -> Any:
    """Call rapidyaml with stderr muted: its C++ error handler writes there before raising
    (the reference path reports the error, with its position)."""
    with _quiet_stderr():
        return function(*args)


def _load_fast(raw: bytes, path: str) -> LoadedFile | None:
    ext = _ryml_ext()
    if ext is None:  # pragma: no cover - rapidyaml is a dependency, but stay usable without
        return None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the decoder allocates only acyclic containers; the collector just slows it
    try:
        buffer = bytearray(raw)  # the tree points into it until it is emitted
        tree = _FlatTree(ext)
        tree.parse(buffer, raw)
        root = tree.root_id()
        if tree.size() <= 1 or tree.is_stream(root):
            return None  # empty or multi-document: let the reference path explain it
        # On one line: rapidyaml indents block collections, which is a third more text to
        # write and to decode for nothing.
        tree.set_container_style(root, ext.FLOW_SL)
        emitted = _quietly(ext.emit_json_malloc, tree.handle, root)  # deep nesting fails
        del tree, buffer  # free the C++ tree before the Python objects are built: lower peak
        data = json.loads(emitted, object_pairs_hook=_pairs_hook, parse_float=YamlFloat)
    except Exception:  # any disagreement: the reference path decides, with exact messages
        return None
    finally:
        if gc_was_enabled:
            gc.enable()
    locator = _RymlLocator(raw)
    return LoadedFile(path, raw, data, locator.locate)


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


_BUFFER_VIEW: Any = None


def _address(obj: Any) -> int:
    """Start address of a buffer (rapidyaml hands scalars out as views into our buffer).
    ctypes is imported here: only a diagnostic's position needs it."""
    import ctypes

    global _BUFFER_VIEW
    if _BUFFER_VIEW is None:

        class PyBuffer(ctypes.Structure):
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

        _BUFFER_VIEW = PyBuffer
    view = _BUFFER_VIEW()
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
        self._none = -1

    @property
    def tree(self) -> Any:
        if self._tree is None:
            ext = _ryml_ext()
            self.buffer = bytearray(self.raw)  # parsed in place: scalars get unescaped in it
            tree = _FlatTree(ext)
            tree.parse(self.buffer, self.raw)
            self.base = _address(self.buffer)
            self._none = ext.cvar.NONE  # the id rapidyaml uses for "no node"
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
        while child is not None and child >= 0 and child != self._none:
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
                if node == self._none:
                    return None
        offset = self._node_offset(node, key)
        return None if offset is None else self._offset_to_position(offset)


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
    problems: list[Diagnostic] = []
    data = None if node is None else _construct(node, (), positions, problems, path, set())
    if any(d.rule != DUPLICATE_KEY for d in problems):  # a value could not be read at all
        raise YamlError(problems[0]) if len(problems) == 1 else _MultiYamlError(problems)

    def locate(p: Path, key: bool) -> tuple[int, int] | None:
        found = positions.get(p)
        if found is None:
            return None
        return (found[0], found[1]) if key else (found[2], found[3])

    return LoadedFile(path, raw, data, locate, problems)


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
    """A problem found while loading as an error (what each of them is now; callers that
    take a file's values as they are, inputs and sites.yaml, keep saying so)."""
    from dataclasses import replace

    return replace(diagnostic, severity=Severity.ERROR)


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
    problems: list[Diagnostic],
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
        return _scalar(node, problems, path)
    if id(node) in active:
        problems.append(
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
                _construct(item, (*here, i), positions, problems, path, active)
                for i, item in enumerate(node.value)
            ]
        result: dict[Any, Any] = {}
        seen: dict[Any, Any] = {}
        for key_node, value_node in _merged_pairs(node):
            if isinstance(key_node, yaml.ScalarNode):
                key = _scalar(key_node, problems, path)
            else:  # a complex key ({a: 1}: x): keep readable text, as in the source
                key = _flow_text(_construct(key_node, (), {}, [], path, active))
            if not isinstance(key, str):
                key = scalar_text(key)
            if key in seen:
                # YAML 1.2 (3.2.1.1) requires unique keys, and TOSCA files are YAML 1.2: an
                # error, as in the peers' conformance suites (PyYAML, hence tosca-parser, keeps
                # the last value silently). The last value is kept all the same, so that the
                # rest of the file is still checked and every problem reported.
                mark = key_node.start_mark
                first = seen[key]
                problems.append(
                    Diagnostic(
                        DUPLICATE_KEY,
                        Severity.ERROR,
                        f"duplicate key '{key}' (first defined at line {first.line + 1})",
                        Location(path, mark.line + 1, mark.column + 1),
                        "remove or rename one of them",
                        related=(Location(path, first.line + 1, first.column + 1),),
                    )
                )
            seen[key] = key_node.start_mark
            result[key] = _construct(
                value_node, (*here, key), positions, problems, path, active, key_node.start_mark
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
