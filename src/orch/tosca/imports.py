"""Where imported definitions come from: files relative to the importer, CSAR archives and
folders, repositories, and catalog entries named ``name:version``.

No network: a URL import is reported as unreachable at once instead of waiting on a socket.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.loader import LoadedFile, YamlError, load_bytes, load_file, yaml_error_diagnostics

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CATALOG_REF = re.compile(r"([A-Za-z0-9_.\-]+):([0-9][A-Za-z0-9_.\-]*)\Z")
_META_NAME = re.compile(rb"^\s*template_name\s*:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)
_META_VERSION = re.compile(rb"^\s*template_version\s*:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


def builtin_types_dir() -> Path:
    """orch's own type libraries: inside the installed package, or the source checkout's."""
    packaged = Path(__file__).resolve().parent.parent / "tosca_types"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "tosca_types"


NORMATIVE_FILE = "tosca-normative-types-1.3.yaml"


@dataclass
class Catalog:
    """Type libraries found by ``metadata.template_name`` and ``template_version``.

    Files are indexed by a cheap look at their bytes; only the entries that are imported get
    parsed.
    """

    roots: list[Path]
    _index: dict[tuple[str, str], Path] | None = field(default=None, repr=False)

    def index(self) -> dict[tuple[str, str], Path]:
        if self._index is None:
            found: dict[tuple[str, str], Path] = {}
            for root in self.roots:
                for path in _yaml_files(root):
                    try:
                        head = path.read_bytes()[:65536]
                    except OSError:
                        continue
                    name = _META_NAME.search(head)
                    version = _META_VERSION.search(head)
                    if name and version:
                        key = (name.group(1).decode(), version.group(1).decode())
                        found.setdefault(key, path)
            self._index = found
        return self._index

    def find(self, name: str, version: str) -> Path | None:
        return self.index().get((name, version))

    def find_file(self, basename: str) -> Path | None:
        """A catalog file by its name (Yorc's ``<name.yml>`` built-in imports)."""
        for root in self.roots:
            for path in _yaml_files(root):
                if path.name == basename:
                    return path
        if basename == "normative-types.yml":
            return builtin_types_dir() / NORMATIVE_FILE
        return None

    def versions_of(self, name: str) -> list[str]:
        return sorted(v for (n, v) in self.index() if n == name)

    def names(self) -> list[str]:
        return sorted({n for (n, _v) in self.index()})


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
    """orch's tosca_types first, then --catalog folders, then ORCH_CATALOG (os.pathsep list)."""
    roots = [builtin_types_dir()]
    roots.extend(Path(p) for p in extra)
    env = os.environ.get("ORCH_CATALOG", "")
    roots.extend(Path(p) for p in env.split(os.pathsep) if p)
    return Catalog(roots)


# ------------------------------------------------------------------------------ CSAR
def csar_entry(path: Path, reporter: Reporter) -> tuple[Path, LoadedFile | None] | None:
    """The entry definitions of a CSAR (zip file or unpacked folder), loaded.

    Returns None when ``path`` is not a CSAR. A zip is read without unpacking it to disk.
    """
    if path.is_dir():
        meta = path / "TOSCA-Metadata" / "TOSCA.meta"
        if meta.is_file():
            entry = _meta_entry(meta.read_text("utf-8", "replace"))
        else:
            candidates = [p for p in path.iterdir() if p.suffix in (".yaml", ".yml")]
            entry = candidates[0].name if len(candidates) == 1 else None
        if entry is None:
            return None
        return path / entry, None
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            entry = None
            if "TOSCA-Metadata/TOSCA.meta" in names:
                entry = _meta_entry(
                    archive.read("TOSCA-Metadata/TOSCA.meta").decode("utf-8", "replace")
                )
            else:
                roots = [n for n in names if "/" not in n and n.endswith((".yaml", ".yml"))]
                entry = roots[0] if len(roots) == 1 else None
            if entry is None or entry not in names:
                return None
            virtual = path / entry
            try:
                loaded = load_bytes(archive.read(entry), str(virtual))
            except YamlError as exc:
                for diagnostic in yaml_error_diagnostics(exc):
                    reporter.add(diagnostic)
                return virtual, None
            return virtual, loaded
    return None


def _meta_entry(text: str) -> str | None:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Entry-Definitions":
            return value.strip()
    return None


def read_zip_member(path: Path) -> bytes | None:
    """Bytes of ``archive.zip/inner/file`` when ``path`` points inside a zip."""
    import zipfile

    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        candidate = Path(*parts[:i])
        if candidate.is_file() and zipfile.is_zipfile(candidate):
            inner = "/".join(parts[i:])
            with zipfile.ZipFile(candidate) as archive:
                try:
                    return archive.read(_normalise_member(inner))
                except KeyError:
                    return None
    return None


def _normalise_member(inner: str) -> str:
    parts: list[str] = []
    for part in inner.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


# ------------------------------------------------------------------------------ resolution
@dataclass
class ImportTarget:
    path: Path | None
    problem: tuple[str, str, str | None] | None = None  # (rule, message, hint)


def resolve_import(
    entry: object,
    importer: LoadedFile,
    where: Where,
    repositories: dict[str, object],
    catalog: Catalog,
) -> ImportTarget:
    """Turn one ``imports`` entry into a file path, or a problem to report."""
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
            return ImportTarget(found_builtin)
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
            return _local(Path(file[7:]), file)
        return ImportTarget(
            None,
            (
                "imports.unreachable",
                f"cannot fetch '{file}': orch does not download imports",
                "save the file beside the blueprint and import it by relative path",
            ),
        )
    base = Path(importer.path).parent
    candidate = base / file
    if candidate.exists() or read_zip_member(candidate) is not None:
        return ImportTarget(candidate)
    match = _CATALOG_REF.match(file)
    if match:
        name, version = match.groups()
        found = catalog.find(name, version)
        if found is not None:
            return ImportTarget(found)
        versions = catalog.versions_of(name)
        if versions:
            newest = catalog.find(name, versions[-1])
            return ImportTarget(
                newest,
                (
                    "imports.version-substituted",
                    f"catalog has no '{file}'; using {name}:{versions[-1]} instead",
                    f"catalog has {name} versions: {', '.join(versions)}",
                ),
            )
        if versions:
            hint = ""
        else:
            hint = did_you_mean(name, catalog.names()) or ""
            hint = (hint + "; " if hint else "") + "add the library's folder with --catalog DIR"
        return ImportTarget(
            None, ("imports.not-in-catalog", f"catalog entry '{file}' not found", hint)
        )
    return _local(candidate, file)


def _local(path: Path, written: str) -> ImportTarget:
    if path.is_file() or read_zip_member(path) is not None:
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
    """Load a file that may live inside a CSAR zip."""
    if path.is_file():
        return load_file(str(path))
    data = read_zip_member(path)
    if data is None:
        raise FileNotFoundError(str(path))
    return load_bytes(data, str(path))
