"""Where imported definitions come from: files relative to the importer, CSAR archives and
folders, repositories, and catalog entries named ``name:version``.

No network: a URL import is reported as unreachable at once instead of waiting on a socket.

Confinement: a blueprint reads files only inside its root (the entry file's folder, or its CSAR:
a folder holding ``TOSCA-Metadata/TOSCA.meta``, or a zip) and the catalog folders. An import or
an artifact that resolves elsewhere, after symbolic links, is a diagnostic and is never read, so
``imports: [/etc/shadow]`` cannot show a line of it.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import Diagnostic, Location, Severity, did_you_mean
from orch.tosca.loader import (
    MAX_BLUEPRINT_BYTES,
    FileRefused,
    LazyPattern,
    LoadedFile,
    YamlError,
    load_bytes,
    load_file,
    read_regular,
    require_regular,
    size_text,
    yaml_error_diagnostics,
)
from orch.tosca.states import BUILTIN_ARTIFACTS

if TYPE_CHECKING:  # zipfile is imported when a zip is read: most blueprints are no zip
    import zipfile

_URL = LazyPattern(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CATALOG_REF = LazyPattern(r"([A-Za-z0-9_.\-]+):([0-9][A-Za-z0-9_.\-]*)\Z")
_META_NAME = LazyPattern(rb"^\s*template_name\s*:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)
_META_VERSION = LazyPattern(rb"^\s*template_version\s*:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


def builtin_types_dir() -> Path:
    """orch's own type libraries: inside the installed package, or the source checkout's.

    Its ``catalog/`` folder holds the type libraries eFlows4HPC topologies import by name
    (Alien4Cloud's, Yorc's, eFlows4HPC's: each folder with its LICENSE and NOTICE), so that
    ``orch validate`` finds them after ``pip install`` alone."""
    packaged = Path(__file__).resolve().parent.parent / "tosca_types"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "tosca_types"


NORMATIVE_FILE = "tosca-normative-types-1.3.yaml"
CATALOG_DIR = "catalog"
"""The folder of ``tosca_types`` holding the shipped third-party type libraries."""

# Artifact types orch's executors run (orch/executors/ansible.py and script.py; not imported
# here: validating must not load the executors), lower case, and the file endings they take.
_EXECUTOR_ARTIFACTS = frozenset(
    f"{prefix}{kind}".lower()
    for kind in ("Ansible", "Bash", "Python")
    for prefix in ("", "tosca:", "tosca.artifacts.Implementation.", "tosca:Implementation.")
) | {"org.alien4cloud.artifacts.ansibleplaybook"}
_EXECUTOR_ENDINGS = (".sh", ".bash", ".py", ".yml", ".yaml")


@dataclass(frozen=True)
class CatalogChoice:
    """Which file a catalog entry resolved to, when several files that differ carry it."""

    path: Path
    others: tuple[Path, ...] = ()
    reason: str = ""

    def note(self, name: str, version: str) -> tuple[str, str, str | None] | None:
        """An info-level (rule, message, hint), or None when there was nothing to choose."""
        if not self.others:
            return None
        others = ", ".join(str(p) for p in self.others)
        return (
            "imports.catalog-choice",
            f"catalog entry '{name}:{version}' is in {len(self.others) + 1} different files; "
            f"using {self.path} ({self.reason}), not {others}",
            "to use another one, remove it from the catalog folders or import its file by path",
        )


@dataclass
class Catalog:
    """Type libraries found by ``metadata.template_name`` and ``template_version``.

    Files are indexed by a cheap look at their bytes; only the entries that are imported get
    parsed. Several files may carry one entry (two variants of a library, or the same library in
    two catalog folders): :meth:`choose` picks one by a fixed rule.
    """

    roots: list[Path]
    _index: dict[tuple[str, str], list[Path]] | None = field(default=None, repr=False)
    _choices: dict[tuple[str, str], CatalogChoice] = field(default_factory=dict, repr=False)
    summarised: set[tuple[str, ...]] = field(default_factory=set, repr=False)
    """Library-internal findings already summarised by a validation run with this catalog: the
    command line validates all its blueprints with one catalog and says them once."""

    def index(self) -> dict[tuple[str, str], list[Path]]:
        """Every (name, version) and the files carrying it, in the order they were found."""
        if self._index is None:
            found: dict[tuple[str, str], list[Path]] = {}
            for root in self.roots:
                for path in _yaml_files(root):
                    try:
                        head = read_regular(path, 65536, "a catalog file", head=True)
                    except OSError:
                        continue
                    name = _META_NAME.search(head)
                    version = _META_VERSION.search(head)
                    if name and version:
                        key = (name.group(1).decode(), version.group(1).decode())
                        found.setdefault(key, []).append(path)
            self._index = found
        return self._index

    def find(self, name: str, version: str) -> Path | None:
        choice = self.choose(name, version)
        return None if choice is None else choice.path

    def choose(self, name: str, version: str) -> CatalogChoice | None:
        """The file for ``name:version``, chosen among the files that carry it.

        Files with the same bytes count as one. Among files that differ, the one whose
        operation implementations orch can run wins: the most implementations that name one of
        orch's built-in executors (``orch.artifacts.Builtin``, the eFlows4HPC Yorc plugin's
        ``org.eflows4hpc.pycompss.plugin.artifacts.Deployment``) or an Ansible playbook or a
        script (``.yml``, ``.sh``, ``.py``...); then the fewest that orch cannot run (a
        container image as an operation's implementation, a file naming the type file itself);
        then the file found first (orch's catalog, then --catalog folders, then ORCH_CATALOG,
        each in path order). So ``org.eflows4hpc.pycompss.plugin`` resolves to the Yorc plugin's
        ``tosca/yorc/types.yaml`` (``file: embedded``, run by orch's PyCOMPSs executor), not
        to the Alien4Cloud stand-in ``tosca/alien/types.yaml`` (its operations name
        ``types.yaml`` as a Docker image), whatever the order the folders are found in.
        """
        key = (name, version)
        if key in self._choices:
            return self._choices[key]
        paths = self.index().get(key)
        if not paths:
            return None
        distinct = _distinct(paths)
        if len(distinct) == 1:
            choice = CatalogChoice(distinct[0])
        else:
            scores = {path: _runnability(path) for path in distinct}
            ranked = sorted(
                distinct, key=lambda p: (-scores[p][0], scores[p][1], distinct.index(p))
            )
            best = ranked[0]
            runs, cannot = scores[best]
            if all(scores[p] == scores[best] for p in ranked):
                reason = "found first; the files run the same number of implementations"
            else:
                total = runs + cannot
                others = ", ".join(
                    f"{scores[p][0]} of {scores[p][0] + scores[p][1]}" for p in ranked[1:]
                )
                reason = (
                    f"orch can run {runs} of its {total} operation implementation"
                    f"{'s' if total != 1 else ''}; of the other{'s' if len(ranked) > 2 else ''}"
                    f": {others}"
                )
            choice = CatalogChoice(best, tuple(ranked[1:]), reason)
        self._choices[key] = choice
        return choice

    def find_file(self, basename: str) -> Path | None:
        """A catalog file by its name (Yorc's ``<name.yml>`` built-in imports): the first of
        that name, roots in order, each in path order. So yorc-types' ``<normative-types.yml>``
        is Alien4Cloud's normative types 1.0.0-ALIEN20 of the shipped catalog (what Alien4Cloud
        topologies import beside yorc-types), found before Yorc's own copy."""
        for root in self.roots:
            for path in _yaml_files(root):
                if path.name == basename:
                    return path
        if basename == "normative-types.yml":
            return builtin_types_dir() / NORMATIVE_FILE
        return None

    def versions_of(self, name: str) -> list[str]:
        """The versions of ``name``, in version order (oldest first)."""
        return sorted((v for (n, v) in self.index() if n == name), key=version_order)

    def names(self) -> list[str]:
        return sorted({n for (n, _v) in self.index()})

    def nearest(self, name: str, version: str) -> str | None:
        """The version of ``name`` to use for ``version``: see :func:`nearest_version`."""
        return nearest_version(version, self.versions_of(name))


def _distinct(paths: list[Path]) -> list[Path]:
    """``paths`` without the files whose bytes equal an earlier one's (first kept)."""
    if len(paths) == 1:
        return paths
    kept: list[Path] = []
    seen: set[bytes] = set()
    for path in paths:
        try:
            data = read_regular(path, MAX_BLUEPRINT_BYTES, "a catalog file")
        except OSError:
            data = str(path).encode()  # unreadable: kept apart, loading it reports why
        if data not in seen:
            seen.add(data)
            kept.append(path)
    return kept


def _runnability(path: Path) -> tuple[int, int]:
    """(operation implementations orch can run, implementations it cannot) in a type file."""
    try:
        data = load_file(str(path)).data
    except (OSError, YamlError):
        return (0, 0)
    counts = [0, 0]

    def implementation(value: object) -> None:
        if isinstance(value, dict) and "primary" in value and "file" not in value:
            value = value["primary"]
        if isinstance(value, dict):
            kind, file = value.get("type"), value.get("file")
            if isinstance(kind, str) and kind in BUILTIN_ARTIFACTS:
                counts[0] += 1
                return
            runs = (
                isinstance(kind, str)
                and kind.lower() in _EXECUTOR_ARTIFACTS
                and isinstance(file, str)
                and os.path.basename(file) != path.name
            )
        else:
            runs = (
                isinstance(value, str)
                and value.lower().endswith(_EXECUTOR_ENDINGS)
                and os.path.basename(value) != path.name
            )
        counts[0 if runs else 1] += 1

    def walk(node: object, depth: int) -> None:
        if depth > 12:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "implementation":
                    implementation(value)
                else:
                    walk(value, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    if isinstance(data, dict):
        for kind in ("node_types", "relationship_types", "interface_types", "group_types",
                     "policy_types"):  # fmt: skip
            walk(data.get(kind), 0)
    return (counts[0], counts[1])


# ------------------------------------------------------------------------------ versions
_RELEASE = re.compile(r"([0-9]+(?:\.[0-9]+)*)[.\-+_]?(.*)\Z", re.DOTALL)
_PRE_RELEASE = re.compile(r"(?i)(snapshot|alpha|beta|rc|dev|pre|m[0-9])")


def _split_version(text: str) -> tuple[tuple[int, ...], str]:
    """(release numbers without trailing zeros, qualifier): '1.4.0-SNAPSHOT' is ((1, 4),
    'SNAPSHOT'); '1.4' and '1.4.0' are the same release."""
    match = _RELEASE.match(text)
    if match is None:
        return ((), text)
    numbers = [int(n) for n in match.group(1).split(".")[:8] if len(n) <= 18]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return (tuple(numbers), match.group(2))


def version_order(text: str) -> tuple[tuple[int, ...], int, str]:
    """A sort key: by release, then a pre-release (SNAPSHOT, rc...) before the release, then
    other qualifiers (1.0.0-ALIEN20) after it; qualifiers of one kind alphabetically."""
    release, qualifier = _split_version(text)
    if not qualifier:
        rank = 1
    elif _PRE_RELEASE.match(qualifier):
        rank = 0
    else:
        rank = 2
    return (release, rank, qualifier.lower())  # alpha < beta < rc < snapshot, as Maven


def nearest_version(wanted: str, versions: Iterable[str]) -> str | None:
    """The version among ``versions`` nearest to ``wanted`` (None when there is none).

    The same version if there; else the same release with another qualifier (``1.4.0`` for
    ``1.4.0-SNAPSHOT``, ``1.1.0-SNAPSHOT`` for ``1.1.0``; the plain release first, then the
    latest qualifier); else the version nearest in version order: the one sharing the most
    leading release numbers with ``wanted``, then the smallest step at the first number that
    differs (``1.2.0`` for ``1.3.0`` among 1.0.0, 1.2.0, 2.0.0: not the newest), the later one
    on a tie (a later minor version keeps what an earlier one had).
    """
    versions = list(dict.fromkeys(versions))
    if wanted in versions:
        return wanted
    if not versions:
        return None
    release, _qualifier = _split_version(wanted)

    def closeness(version: str) -> tuple[int, int, int, tuple[tuple[int, ...], int, str]]:
        other, qualifier = _split_version(version)
        length = max(len(release), len(other))
        mine = release + (0,) * (length - len(release))
        theirs = other + (0,) * (length - len(other))
        shared = next((i for i in range(length) if mine[i] != theirs[i]), length)
        step = abs(mine[shared] - theirs[shared]) if shared < length else 0
        plain = 1 if not qualifier and shared == length else 0  # same release: plain first
        return (shared, -step, plain, version_order(version))

    return max(versions, key=closeness)


def _yaml_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                yield Path(folder) / name


def default_catalog(extra: Iterable[str | os.PathLike[str]] = ()) -> Catalog:
    """orch's tosca_types first (its own libraries, then the shipped third-party ones in
    ``catalog/``), then --catalog folders, then ORCH_CATALOG (os.pathsep list)."""
    roots = [builtin_types_dir()]
    roots.extend(Path(p) for p in extra)
    env = os.environ.get("ORCH_CATALOG", "")
    roots.extend(Path(p) for p in env.split(os.pathsep) if p)
    return Catalog(roots)


# ------------------------------------------------------------------------------ confinement
def _within(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def blueprint_root(entry: Path) -> Path:
    """The folder (or zip) a blueprint's own files must be in: a CSAR given as a folder or a
    zip; else the nearest folder above the entry holding ``TOSCA-Metadata/TOSCA.meta`` (an
    entry inside an unpacked CSAR); else the entry's own folder."""
    if entry.is_dir():
        return entry
    archive = _split_zip(entry)
    if archive is not None:
        return archive[0]
    if entry.is_file() and is_zip(entry):
        return entry
    folder = entry.absolute().parent
    for candidate in (folder, *folder.parents):
        if (candidate / "TOSCA-Metadata" / "TOSCA.meta").is_file():
            return candidate
    return folder


@dataclass(frozen=True)
class Confinement:
    """Where a blueprint may read files: its root and the catalogs (real paths)."""

    root: str
    catalogs: tuple[str, ...] = ()

    @classmethod
    def of(cls, entry: Path, catalog: Catalog | None = None) -> Confinement:
        """For the blueprint ``entry`` (a file, a CSAR folder or zip) and ``catalog``."""
        roots = catalog.roots if catalog is not None else [builtin_types_dir()]
        return cls(
            os.path.realpath(blueprint_root(Path(entry))),
            tuple(os.path.realpath(r) for r in roots),
        )

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` (followed through symbolic links; a path inside a zip is taken
        lexically) is inside the root or a catalog."""
        real = os.path.realpath(path)
        return _within(real, self.root) or any(_within(real, c) for c in self.catalogs)

    def artifact_path(self, file: str, base: str) -> str | None:
        """The file an artifact or implementation ``file``, written in a file of folder
        ``base``, names; None when it is outside (it must then not be read).

        A path starting with '/' is read from the root, as xOpera reads a CSAR's
        '/playbooks/x.yml': never from this machine's '/'."""
        if os.path.isabs(file):
            path = os.path.join(self.root, file.lstrip("/"))
        else:
            path = os.path.join(base, file)
        path = os.path.normpath(path)
        return path if self.contains(path) else None

    def describe(self) -> str:
        kind = "CSAR" if os.path.isfile(self.root) else "folder"
        catalogs = " and the catalogs" if self.catalogs else ""
        return f"the blueprint's {kind} {self.root}{catalogs}"


OUTSIDE_HINT = (
    "a blueprint reads files only inside its own folder (or CSAR) and the catalogs: move the "
    "file there, or add its folder with --catalog DIR"
)


# ------------------------------------------------------------------------------ CSAR
META = "TOSCA-Metadata/TOSCA.meta"
MAX_META_BYTES = 64 * 1024
"""A TOSCA.meta file: a few lines of 'Name: value'."""


def csar_entry(path: Path, reporter: Reporter) -> tuple[Path, LoadedFile | None] | None:
    """The entry definitions of a CSAR (zip file or unpacked folder), loaded.

    Returns None when ``path`` is not a CSAR, after reporting why (no TOSCA.meta and not
    exactly one YAML file at the top, a malformed TOSCA.meta, an entry that is missing or
    outside the CSAR). A zip is read without unpacking it to disk.
    """
    if path.is_dir():
        return _folder_entry(path, reporter)
    try:
        with _open_zip(path) as archive:
            return _zip_entry(path, archive, reporter)
    except OSError as exc:
        reporter.add(_csar_problem(path, f"cannot read the CSAR: {exc.strerror or exc}"))
        return None


def _csar_problem(
    path: Path | str, message: str, hint: str | None = None, line: int = 0
) -> Diagnostic:
    return Diagnostic(
        "csar.entry", Severity.ERROR, message, Location(str(path), line, 1 if line else 0), hint
    )


_NO_ENTRY_HINT = (
    "name the entry in TOSCA-Metadata/TOSCA.meta ('Entry-Definitions: service.yaml'), "
    "or leave exactly one YAML file at the top of the CSAR"
)


def _single_root(path: Path, names: list[str], reporter: Reporter) -> str | None:
    """A CSAR without TOSCA.meta: its entry is its only YAML file at the top."""
    if len(names) == 1:
        return names[0]
    if names:
        shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
        found = f"{len(names)} YAML files at the top ({shown}), so none is the entry"
    else:
        found = "no YAML file at the top"
    reporter.add(_csar_problem(path, f"not a CSAR: no {META}, and {found}", _NO_ENTRY_HINT))
    return None


def _folder_entry(path: Path, reporter: Reporter) -> tuple[Path, None] | None:
    meta = path / "TOSCA-Metadata" / "TOSCA.meta"
    if meta.exists():
        try:
            text = read_regular(meta, MAX_META_BYTES, "TOSCA.meta").decode("utf-8", "replace")
        except OSError as exc:
            reporter.add(
                Diagnostic(
                    "csar.meta",
                    Severity.ERROR,
                    f"cannot read TOSCA.meta: {exc.strerror or exc}",
                    Location(str(meta)),
                )
            )
            return None
        found = parse_meta(text, str(meta), reporter)
        if found is None:
            return None
        entry, line = found
        target = Path(os.path.normpath(path / entry))
        if not _within(os.path.realpath(target), os.path.realpath(path)):
            reporter.add(_outside_entry(meta, entry, line))
            return None
        if not target.is_file():
            reporter.add(_missing_entry(meta, entry, line))
            return None
        return target, None
    names = [p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
    entry_name = _single_root(path, names, reporter)
    return None if entry_name is None else (path / entry_name, None)


def _zip_entry(
    path: Path, archive: zipfile.ZipFile, reporter: Reporter
) -> tuple[Path, LoadedFile | None] | None:
    names = archive.namelist()
    if META in names:
        meta = path / META
        try:
            raw = _read_member(archive, META, MAX_META_BYTES, "TOSCA.meta")
        except OSError as exc:
            reporter.add(
                Diagnostic(
                    "csar.meta",
                    Severity.ERROR,
                    f"cannot read TOSCA.meta: {exc.strerror or exc}",
                    Location(str(meta)),
                )
            )
            return None
        found = parse_meta(raw.decode("utf-8", "replace"), str(meta), reporter)
        if found is None:
            return None
        written, line = found
        entry = _member_name(written)
        if entry is None:
            reporter.add(_outside_entry(meta, written, line))
            return None
        if entry not in names:
            reporter.add(_missing_entry(meta, written, line))
            return None
    else:
        roots = [n for n in names if "/" not in n and n.endswith((".yaml", ".yml"))]
        single = _single_root(path, roots, reporter)
        if single is None:
            return None
        entry = single
    virtual = path / entry
    try:
        loaded = load_bytes(
            _read_member(archive, entry, MAX_BLUEPRINT_BYTES, "a blueprint file"), str(virtual)
        )
    except YamlError as exc:
        for diagnostic in yaml_error_diagnostics(exc):
            reporter.add(diagnostic)
        return virtual, None
    except OSError as exc:
        reporter.add(_csar_problem(virtual, f"cannot read the entry: {exc.strerror or exc}"))
        return None
    return virtual, loaded


def _outside_entry(meta: Path, entry: str, line: int) -> Diagnostic:
    return Diagnostic(
        "csar.meta",
        Severity.ERROR,
        f"Entry-Definitions '{entry}' is outside the CSAR",
        Location(str(meta), line, 1),
        "give the entry's path relative to the CSAR's top folder",
    )


def _missing_entry(meta: Path, entry: str, line: int) -> Diagnostic:
    return Diagnostic(
        "csar.meta",
        Severity.ERROR,
        f"Entry-Definitions names '{entry}', which is not in the CSAR",
        Location(str(meta), line, 1),
        "give the entry's path relative to the CSAR's top folder",
    )


def parse_meta(text: str, meta: str, reporter: Reporter) -> tuple[str, int] | None:
    """``Entry-Definitions`` of a TOSCA.meta file and its line; every malformed line reported.

    The file is blocks of 'Name: value' lines (TOSCA 1.3, 4.2.1.1; a line starting with a space
    continues the value above). A line is quoted by number only: the file may not be TOSCA.
    """
    entry: tuple[str, int] | None = None
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            in_block = False
            continue
        if line[0] in " \t" and in_block:
            continue  # continuation of the value above
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            reporter.add(
                Diagnostic(
                    "csar.meta",
                    Severity.ERROR,
                    f"line {number} of TOSCA.meta is not 'Name: value'",
                    Location(meta, number, 1),
                    "TOSCA.meta holds 'Name: value' lines, e.g. 'Entry-Definitions: "
                    "service.yaml'",
                )
            )
            continue
        in_block = True
        if name == "Entry-Definitions":
            if entry is not None:
                reporter.add(
                    Diagnostic(
                        "csar.meta",
                        Severity.ERROR,
                        f"Entry-Definitions given twice (first at line {entry[1]})",
                        Location(meta, number, 1),
                        "keep one Entry-Definitions",
                    )
                )
            elif value.strip():
                entry = (value.strip(), number)
    if entry is None:
        reporter.add(
            Diagnostic(
                "csar.meta",
                Severity.ERROR,
                "TOSCA.meta has no Entry-Definitions",
                Location(meta, 1, 1),
                "add a line 'Entry-Definitions: <the service template's path in the CSAR>'",
            )
        )
    return entry


# ------------------------------------------------------------------------------ zip members
_END_OF_ZIP = b"PK\x05\x06"
"""The signature of a zip's end-of-central-directory record."""
_END_SEARCH = (1 << 16) + 22
"""Where zipfile looks for that record: the file's last 22 bytes plus the longest comment."""


def is_zip(path: Path) -> bool:
    """``zipfile.is_zipfile(path)``, without importing zipfile for a file that cannot be a zip:
    one whose end holds no end-of-archive record, where zipfile looks for it (a YAML file)."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - _END_SEARCH))
            if _END_OF_ZIP not in stream.read(_END_SEARCH):
                return False
    except OSError:
        return False
    import zipfile

    return zipfile.is_zipfile(path)


def _zip_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged zip raises."""
    import zipfile
    import zlib

    return (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
            EOFError, zlib.error, ValueError)  # fmt: skip


@contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """A zip archive; a damaged or refused one is an ``OSError`` saying why."""
    import zipfile

    try:
        require_regular(path, "a CSAR")  # never open a FIFO or a device
        archive = zipfile.ZipFile(path)
    except _zip_errors() as exc:
        raise OSError(errno.EINVAL, f"not a readable zip file ({exc})") from None
    with archive:
        yield archive


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, what: str) -> bytes:
    """A member's bytes, at most ``limit``: its declared size and the bytes it really unpacks
    to are both bounded (a zip bomb declares little and unpacks much)."""
    info = archive.getinfo(name)
    if info.is_dir():
        raise FileRefused(errno.EISDIR, f"it is a folder of the zip; {what} must be a file")
    too_large = FileRefused(
        errno.EFBIG, f"it unpacks to more than {size_text(limit)}, the most orch reads for {what}"
    )
    if info.file_size > limit:
        raise too_large
    parts: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as stream:
            while total <= limit:  # in steps: a lying member costs one step, not the cap
                chunk = stream.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
    except _zip_errors() as exc:
        raise OSError(errno.EIO, f"cannot unpack it from the zip ({exc})") from None
    if total > limit:
        raise too_large
    return b"".join(parts)


def _member_name(inner: str) -> str | None:
    """A member path normalised ('a/../b' is 'b'), or None when it leaves the archive."""
    parts: list[str] = []
    for part in inner.replace("\\", "/").split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _split_zip(path: Path) -> tuple[Path, str] | None:
    """(archive, member) when ``path`` points inside a zip file: ``a.zip/defs/t.yaml``."""
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        candidate = Path(*parts[:i])
        if candidate.is_file() and is_zip(candidate):
            inner = _member_name("/".join(parts[i:]))
            return None if inner is None else (candidate, inner)
    return None


def zip_member_exists(path: Path) -> bool:
    """Whether ``path`` names a file inside a zip (nothing unpacked)."""
    found = _split_zip(path)
    if found is None:
        return False
    try:
        with _open_zip(found[0]) as archive:
            return found[1] in archive.NameToInfo and not archive.getinfo(found[1]).is_dir()
    except OSError:
        return False


def read_zip_member(
    path: Path, limit: int = MAX_BLUEPRINT_BYTES, what: str = "a blueprint file"
) -> bytes | None:
    """Bytes of ``archive.zip/inner/file`` when ``path`` points inside a zip, else None.

    Raises ``OSError`` when the member is refused (too large, damaged)."""
    found = _split_zip(path)
    if found is None:
        return None
    archive_path, inner = found
    with _open_zip(archive_path) as archive:
        if inner not in archive.NameToInfo:
            return None
        return _read_member(archive, inner, limit, what)


MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
"""An artifact or implementation file a deployment snapshots (scripts, playbooks, small data);
larger data belongs in a stage-in, not in the blueprint."""


def read_blueprint_file(
    path: str | os.PathLike[str], confinement: Confinement, limit: int = MAX_ARTIFACT_BYTES
) -> bytes:
    """The bytes of a file a blueprint names (an artifact, an implementation, a dependency):
    inside ``confinement``, a regular file or a member of the CSAR zip, at most ``limit`` bytes.

    Raises ``OSError`` saying why (``FileRefused``: outside, not a regular file, too large).
    """
    if not confinement.contains(path):
        raise FileRefused(errno.EACCES, f"it is outside {confinement.describe()}")
    data = read_zip_member(Path(path), limit, "an artifact")
    if data is not None:
        return data
    return read_regular(path, limit, "an artifact")


def zip_virtual_path(path: Path) -> Path:
    """``a.zip/x/../y.yaml`` as ``a.zip/y.yaml``: one name per member (imports are loaded
    once), other paths unchanged."""
    found = _split_zip(path)
    return path if found is None else found[0] / found[1]


# ------------------------------------------------------------------------------ resolution
@dataclass
class ImportTarget:
    path: Path | None
    problem: tuple[str, str, str | None] | None = None  # (rule, message, hint)
    note: tuple[str, str, str | None] | None = None
    """An info-level (rule, message, hint): which of several catalog files was used."""
    catalog: bool = False
    """Found in a catalog (by name, or Yorc's ``<file.yml>``): a library the user cannot edit."""


def resolve_import(
    entry: object,
    importer: LoadedFile,
    where: Where,
    repositories: dict[str, object],
    catalog: Catalog,
    confinement: Confinement | None = None,
) -> ImportTarget:
    """Turn one ``imports`` entry into a file path, or a problem to report.

    With ``confinement``, a file outside the blueprint's root and the catalogs is a problem
    (``imports.outside-root``), found before looking whether it exists."""
    target = _resolve(entry, importer, repositories, catalog, confinement)
    if (
        confinement is not None
        and target.path is not None
        and not confinement.contains(target.path)
    ):
        written = entry.get("file", entry.get("url")) if isinstance(entry, dict) else entry
        return _outside(str(written), confinement)
    return target


def _outside(written: str, confinement: Confinement) -> ImportTarget:
    return ImportTarget(
        None,
        (
            "imports.outside-root",
            f"import '{written}' is outside {confinement.describe()}: not read",
            OUTSIDE_HINT,
        ),
    )


def _resolve(
    entry: object,
    importer: LoadedFile,
    repositories: dict[str, object],
    catalog: Catalog,
    confinement: Confinement | None,
) -> ImportTarget:
    if isinstance(entry, dict):
        file = entry.get("file", entry.get("url"))
        repository = entry.get("repository")
    else:
        file, repository = entry, None
    if not isinstance(file, str) or not file:
        return ImportTarget(None, ("imports.shape", "import needs a 'file'", None))
    if repository is not None:
        if not isinstance(repository, str) or repository not in repositories:
            return ImportTarget(
                None,
                (
                    "imports.unknown-repository",
                    f"unknown repository '{repository}'",
                    did_you_mean(str(repository), repositories) or "declare it under repositories",
                ),
            )
        definition = repositories[repository]
        url = definition.get("url") if isinstance(definition, dict) else definition
        return ImportTarget(
            None,
            (
                "imports.unreachable",
                f"cannot fetch '{file}' from repository '{repository}' ({url}): orch does not "
                "download imports",
                "put the file on disk and import it by relative path, or add its folder "
                "with --catalog",
            ),
        )
    if file.startswith("<") and file.endswith(">"):
        # Yorc's notation for its built-in definition files, e.g. <yorc-types.yml>
        found_builtin = catalog.find_file(file[1:-1])
        if found_builtin is not None:
            return ImportTarget(found_builtin, catalog=True)
        return ImportTarget(
            None,
            (
                "imports.missing-file",
                f"built-in definitions {file} not found in the catalog",
                "add the folder holding it with --catalog DIR",
            ),
        )
    if _URL.match(file):
        if file.startswith("file://"):
            local = Path(file[7:])
            if confinement is not None and not confinement.contains(local):
                return _outside(file, confinement)
            return _local(local, file)
        return ImportTarget(
            None,
            (
                "imports.unreachable",
                f"cannot fetch '{file}': orch does not download imports",
                "save the file beside the blueprint and import it by relative path",
            ),
        )
    base = Path(importer.path).parent
    candidate = zip_virtual_path(base / file)
    if confinement is not None and not confinement.contains(candidate):
        return _outside(file, confinement)  # whether it exists is none of the blueprint's business
    if candidate.exists() or zip_member_exists(candidate):
        return ImportTarget(candidate)
    match = _CATALOG_REF.match(file)
    if match:
        name, version = match.groups()
        return _catalog_entry(catalog, name, version, file)
    return _local(candidate, file)


def catalog_reference(entry: object) -> tuple[str, str] | None:
    """(name, version) of an ``imports`` entry written ``name:version`` (a string, or a map's
    ``file`` without a repository), else None."""
    if isinstance(entry, dict):
        if entry.get("repository") is not None:
            return None
        entry = entry.get("file")
    if not isinstance(entry, str):
        return None
    match = _CATALOG_REF.match(entry)
    return None if match is None else (match.group(1), match.group(2))


def _catalog_entry(catalog: Catalog, name: str, version: str, written: str) -> ImportTarget:
    """A ``name:version`` import: that entry, else the nearest version (a warning)."""
    used = catalog.nearest(name, version)
    if used is None:
        hint = did_you_mean(name, catalog.names()) or ""
        hint = (hint + "; " if hint else "") + "add the library's folder with --catalog DIR"
        return ImportTarget(
            None, ("imports.not-in-catalog", f"catalog entry '{written}' not found", hint)
        )
    choice = catalog.choose(name, used)
    assert choice is not None
    problem = None
    if used != version:
        problem = (
            "imports.version-substituted",
            f"catalog has no '{written}'; using {name}:{used} instead (the nearest version)",
            f"catalog has {name} versions: {', '.join(catalog.versions_of(name))}",
        )
    return ImportTarget(choice.path, problem, choice.note(name, used), catalog=True)


def _local(path: Path, written: str) -> ImportTarget:
    if path.exists() or zip_member_exists(path):  # a FIFO or a folder: refused when loaded
        return ImportTarget(path)
    return ImportTarget(
        None,
        (
            "imports.missing-file",
            f"imported file '{written}' not found (looked at {path})",
            None,
        ),
    )


def load_import(path: Path) -> LoadedFile:
    """Load a file that may live inside a CSAR zip (regular files, sizes capped)."""
    if _split_zip(path) is None:
        return load_file(str(path))
    data = read_zip_member(path)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, "no such file in the zip", str(path))
    return load_bytes(data, str(zip_virtual_path(path)))
