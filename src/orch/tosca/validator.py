"""``validate(path)``: the whole static check of one blueprint, every problem collected.

Order: load the entry file and, recursively, its imports; check each file's grammar; register
every type; check the type definitions; check the topology. Each stage goes on after errors, so a
run reports everything it can find.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orch.tosca import grammar
from orch.tosca.context import Reporter, Where
from orch.tosca.definitions import DefinitionChecker
from orch.tosca.diagnostics import Diagnostic, Location, Severity, did_you_mean
from orch.tosca.functions import FunctionChecker
from orch.tosca.imports import (
    NORMATIVE_FILE,
    Catalog,
    Confinement,
    builtin_types_dir,
    catalog_reference,
    csar_entry,
    default_catalog,
    load_import,
    resolve_import,
)
from orch.tosca.loader import (
    LoadedFile,
    YamlError,
    load_file,
    resolve_plain,
    scalar_text,
    yaml_error_diagnostics,
)
from orch.tosca.topology import TopologyChecker
from orch.tosca.types import KINDS, TypeDef, TypeRegistry
from orch.tosca.values import Invalid, ValueChecker, parse_version

TOSCA_VERSIONS = (
    "tosca_simple_yaml_1_0",
    "tosca_simple_yaml_1_1",
    "tosca_simple_yaml_1_2",
    "tosca_simple_yaml_1_3",
    "http://docs.oasis-open.org/tosca/ns/simple/yaml/1.0",
    "tosca_simple_profile_for_nfv_1_0",
    "yorc_tosca_simple_yaml_1_0",
)
_ALIEN = re.compile(r"alien_dsl_[0-9]+_[0-9]+_[0-9]+\Z")
_FIRST_KEY = re.compile(
    r"(?:\ufeff)?(?:[ \t]*(?:#.*)?\r?\n|---[ \t]*\r?\n|%.*\r?\n)*"
    r"[ \t]*['\"]?tosca_definitions_version"
)


@dataclass
class ValidationResult:
    """What a validation run found, and what it resolved (for the planner)."""

    entry: str
    diagnostics: list[Diagnostic]
    files: list[LoadedFile] = field(default_factory=list)
    registry: TypeRegistry | None = None
    template: LoadedFile | None = None
    confinement: Confinement | None = None
    """Where the blueprint's files may be read from (its root and the catalogs)."""

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


class _Run:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.reporter = Reporter()
        self.registry = TypeRegistry(self.reporter)
        self.files: dict[str, LoadedFile] = {}
        self.typedefs: list[TypeDef] = []
        self.by_file: dict[str, list[TypeDef]] = {}
        self._current_key = ""
        self.alien = False
        self.confinement: Confinement | None = None
        self.library_files: set[str] = set()
        """Files found in a catalog, and what they import: libraries the user cannot edit."""
        self.entry_file: LoadedFile | None = None
        self.pinned: dict[str, str] = {}
        """Catalog entries the entry file imports: name -> the version used."""
        self.library_redefinitions: list[tuple[str, str, str, str]] = []
        """(kind, name, file that wins, file it overrides) between two library files."""

    # ------------------------------------------------------------------ loading
    def load(
        self,
        path: Path,
        *,
        imported_from: Where | None,
        builtin: bool = False,
        prefix: str | None = None,
        preloaded: LoadedFile | None = None,
        library: bool = False,
    ) -> LoadedFile | None:
        key = str(path.resolve()) if path.exists() else str(path)
        if key in self.files:
            if prefix:  # imported again, now with a namespace prefix: register those names too
                for typedef in self.by_file.get(key, ()):
                    self._register(typedef, prefix)
            return self.files[key]
        try:
            loaded = preloaded or (load_import(path) if imported_from else load_file(str(path)))
        except YamlError as exc:
            for diagnostic in yaml_error_diagnostics(exc):
                self.reporter.add(diagnostic if _may_quote(exc.raw) else _unquoted(diagnostic))
            return None
        except OSError as exc:
            location = (
                imported_from.file.location(imported_from.path)
                if imported_from
                else Location(str(path))
            )
            self.reporter.add(
                Diagnostic(
                    "imports.read" if imported_from else "document.read",
                    Severity.ERROR,
                    f"cannot read '{path}': {exc.strerror or exc}",
                    location,
                )
            )
            return None
        self.files[key] = loaded
        if imported_from is None and not builtin:
            self.entry_file = loaded
        if library:
            self.library_files.add(loaded.path)
        if not _is_tosca(loaded):
            self._not_tosca(loaded, imported_from)
            return None
        self._current_key = key
        self._check_file(loaded, builtin=builtin, prefix=prefix, imported=bool(imported_from))
        return loaded

    def _not_tosca(self, loaded: LoadedFile, imported_from: Where | None) -> None:
        """One diagnostic for a file that is not TOSCA, quoting nothing of it: neither its
        lines nor its keys (it may be any file a blueprint names, such as /etc/shadow)."""
        loaded.quotable = False
        data = loaded.data
        if not isinstance(data, dict):
            self.reporter.error(
                "document.shape", Where(loaded, ()), "a TOSCA file must be a map of keynames"
            )
            return
        first = next(k for k in data if not (isinstance(k, str) and k in TOSCA_KEYNAMES))
        line = loaded.location((first,), key=True).line
        message = (
            f"'{loaded.path}' is not a TOSCA file: no tosca_definitions_version, and its line "
            f"{line} holds a key that is not a TOSCA keyname"
        )
        hint = "a TOSCA file starts with tosca_definitions_version: tosca_simple_yaml_1_3"
        if imported_from is not None:
            self.reporter.error("document.not-tosca", imported_from, message, hint)
        else:
            self.reporter.error("document.not-tosca", Where(loaded, (first,)), message, hint,
                                key=True)  # fmt: skip

    def _check_file(
        self, loaded: LoadedFile, *, builtin: bool, prefix: str | None, imported: bool = False
    ) -> None:
        file_key = self._current_key
        root = Where(loaded, ())
        data = loaded.data
        if data is None:
            self.reporter.error(
                "document.empty",
                root,
                "the file is empty",
                "a TOSCA file starts with tosca_definitions_version",
            )
            return
        if not isinstance(data, dict):
            self.reporter.error("document.shape", root, "a TOSCA file must be a map of keynames")
            return
        version = data.get("tosca_definitions_version")
        if version is None and imported:
            pass  # an imported type file may leave it out (common practice)
        elif version is None:
            self.reporter.error(
                "document.missing-version",
                root,
                "missing tosca_definitions_version",
                "start the file with: tosca_definitions_version: tosca_simple_yaml_1_3",
            )
        elif not isinstance(version, str) or not (
            version in TOSCA_VERSIONS or _ALIEN.match(version)
        ):
            self.reporter.error(
                "document.version",
                root / "tosca_definitions_version",
                f"unsupported tosca_definitions_version '{version}'",
                did_you_mean(str(version), [v for v in TOSCA_VERSIONS if "://" not in v])
                + ", alien_dsl_X_Y_Z",
            )
        else:
            if _ALIEN.match(version):
                self.alien = True
            if not _FIRST_KEY.match(loaded.head()):
                self.reporter.error(
                    "document.version-not-first",
                    root / "tosca_definitions_version",
                    "tosca_definitions_version must be the first keyname",
                    "move it to the top of the file",
                    key=True,
                )
        self._metadata_strings(loaded)
        for path, rule, message, hint, key in grammar.check_document(data):
            if path[:1] == ("tosca_definitions_version",) or (
                rule == "grammar.missing-key"
                and not path
                and "tosca_definitions_version" in message
            ):
                continue  # document.* above says it better
            self.reporter.error(rule, Where(loaded, path), message, hint, key=key)
        for warning in loaded.warnings:
            self.reporter.add(warning)
        self._template_version(loaded, version)
        self._dsl_definitions(loaded)
        self._imports(loaded, builtin=builtin, prefix=prefix)
        for kind in KINDS:
            section = data.get(kind)
            if not isinstance(section, dict):
                continue
            for name, body in section.items():
                if not isinstance(body, dict):
                    body = {} if body is None else body
                    if not isinstance(body, dict):
                        continue
                typedef = TypeDef(kind, str(name), body, root / kind / name, builtin=builtin)
                self._register(typedef, prefix)
                self.by_file.setdefault(file_key, []).append(typedef)
                if not builtin:
                    self.typedefs.append(typedef)

    def _pin(self, imports: list[Any]) -> None:
        """Remember the version of each catalog entry the entry file imports: it wins over
        another version of the same library that an imported library asks for (as
        Alien4Cloud keeps a topology's own dependency version on a transitive conflict)."""
        for entry in imports:
            if isinstance(entry, dict) and len(entry) == 1 and "file" not in entry:
                entry = next(iter(entry.values()))
            reference = catalog_reference(entry)
            if reference is None or reference[0] in self.pinned:
                continue
            used = self.catalog.nearest(*reference)
            if used is not None:
                self.pinned[reference[0]] = used

    def _pinned(self, entry: Any, where: Where) -> Any:
        """``entry`` as the version the entry file imports, when it names another version
        of a library the entry file imports (an info note says so)."""
        reference = catalog_reference(entry)
        if reference is None or reference[0] not in self.pinned:
            return entry
        name, version = reference
        used = self.pinned[name]
        if self.catalog.nearest(name, version) == used:
            return entry
        self.reporter.report(
            "imports.version-unified",
            where,
            f"'{name}:{version}' is imported here, your topology imports {name}:{used}: "
            f"using {name}:{used}",
            "one version of a library per topology: the one the topology itself imports",
            severity=Severity.INFO,
        )
        written = f"{name}:{used}"
        return {**entry, "file": written} if isinstance(entry, dict) else written

    def _register(self, typedef: TypeDef, prefix: str | None) -> None:
        """Add a type; a redefinition between two library files is kept for the summary
        (:meth:`library_summary`) instead of a warning the user cannot act on."""
        existing = self.registry.types[typedef.kind].get(typedef.name)
        before = len(self.reporter.diagnostics)
        self.registry.add(typedef, prefix)
        if (
            existing is None
            or len(self.reporter.diagnostics) == before
            or existing.where.file.path not in self.library_files
            or typedef.where.file.path not in self.library_files
        ):
            return
        kept = [d for d in self.reporter.diagnostics[before:] if d.rule != "types.redefined"]
        if len(kept) < len(self.reporter.diagnostics) - before:
            del self.reporter.diagnostics[before:]
            self.reporter.diagnostics.extend(kept)
            self.library_redefinitions.append(
                (typedef.kind, typedef.name, typedef.where.file.path, existing.where.file.path)
            )

    def library_summary(self, main: LoadedFile | None) -> None:
        """One info line for the type redefinitions inside the imported libraries, those not
        already summarised by an earlier run with the same catalog (the command line validates
        all its blueprints with one catalog)."""
        new = [
            r for r in self.library_redefinitions
            if (r[0], r[1], r[2], r[3]) not in self.catalog.summarised
        ]  # fmt: skip
        if not new or main is None:
            return
        self.catalog.summarised.update(new)
        pairs: dict[tuple[str, str], list[str]] = {}
        for _kind, name, winner, loser in new:
            pairs.setdefault((self._label(winner), self._label(loser)), []).append(name)
        parts = []
        for (winner, loser), names in sorted(pairs.items()):
            unique = sorted(set(names))
            shown = ", ".join(unique[:3]) + (", ..." if len(unique) > 3 else "")
            parts.append(f"{winner} over {loser}: {shown}")
        own = sum(1 for d in self.reporter.diagnostics if d.rule == "types.redefined")
        yours = "none in your files" if not own else f"{own} in your files, reported where they are"
        count = len(new)
        where = Where(main, ("imports",)) if isinstance(main.data, dict) else Where(main, ())
        self.reporter.report(
            "types.redefined-in-libraries",
            where,
            f"{count} type redefinition{'s' if count != 1 else ''} inside the imported libraries "
            f"({'; '.join(parts)}); {yours}",
            "the libraries come from the catalog and are not yours to edit: the definition "
            "loaded last wins",
            key=True,
            severity=Severity.INFO,
        )

    def _label(self, path: str) -> str:
        """A library file as ``template_name:template_version``, else its file name."""
        for loaded in self.files.values():
            if loaded.path == path and isinstance(loaded.data, dict):
                metadata = loaded.data.get("metadata")
                if isinstance(metadata, dict) and "template_name" in metadata:
                    name = metadata.get("template_name")
                    version = metadata.get("template_version")
                    return f"{name}:{version}" if version is not None else str(name)
        return Path(path).name

    def _metadata_strings(self, loaded: LoadedFile) -> None:
        """Numeric ``template_name``, ``template_author`` and ``template_version``
        (``template_name: 12022024``, ``template_version: 1``) read as the text written: YAML
        makes them numbers, the author meant names."""
        metadata = loaded.data.get("metadata")
        if not isinstance(metadata, dict):
            return
        for key in ("template_name", "template_author", "template_version"):
            value = metadata.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metadata[key] = _written(loaded, ("metadata", key), value)

    def _template_version(self, loaded: LoadedFile, version: Any) -> None:
        metadata = loaded.data.get("metadata")
        if not isinstance(metadata, dict) or "template_version" not in metadata:
            return
        try:
            written = metadata["template_version"]
            parse_version(
                written,
                loose=(
                    isinstance(version, str)
                    and (bool(_ALIEN.match(version)) or version.startswith("yorc_"))
                )
                or (isinstance(written, str) and written.isdigit()),  # 'template_version: 1'
            )
        except Invalid as exc:
            self.reporter.error(
                "document.template-version",
                Where(loaded, ("metadata", "template_version")),
                str(exc),
            )

    def _dsl_definitions(self, loaded: LoadedFile) -> None:
        section = loaded.data.get("dsl_definitions")
        if isinstance(section, dict) and section and b"*" not in loaded.raw:
            for name in section:
                self.reporter.warning(
                    "document.unused-dsl",
                    Where(loaded, ("dsl_definitions", name)),
                    f"dsl_definitions entry '{name}' is never referenced by an alias",
                    key=True,
                )

    def _imports(self, loaded: LoadedFile, *, builtin: bool, prefix: str | None = None) -> None:
        imports = loaded.data.get("imports")
        library = loaded.path in self.library_files
        if not isinstance(imports, list):
            return
        if loaded is self.entry_file:
            self._pin(imports)
        repositories = loaded.data.get("repositories")
        repositories = repositories if isinstance(repositories, dict) else {}
        for i, entry in enumerate(imports):
            where = Where(loaded, ("imports", i))
            if (
                isinstance(entry, dict)
                and len(entry) == 1
                and isinstance(next(iter(entry.values())), (dict, str))
                and "file" not in entry
            ):
                # TOSCA 1.0 form: a list of single-key maps {name: file-or-definition}
                ((label, entry),) = entry.items()
                where = where / label
            if loaded is not self.entry_file:
                entry = self._pinned(entry, where)
            target = resolve_import(
                entry, loaded, where, repositories, self.catalog, self.confinement
            )
            if target.problem is not None:
                rule, message, hint = target.problem
                if target.path is None:
                    self.reporter.error(rule, where, message, hint)
                    continue
                self.reporter.warning(rule, where, message, hint)
            if target.note is not None:
                rule, message, hint = target.note
                self.reporter.report(rule, where, message, hint, severity=Severity.INFO)
            own_prefix = entry.get("namespace_prefix") if isinstance(entry, dict) else None
            assert target.path is not None
            self.load(
                target.path,
                imported_from=where,
                builtin=builtin,
                prefix=own_prefix or prefix,  # a prefix covers what its file imports
                library=library or target.catalog,
            )


def validate(
    path: str | Path, *, catalogs: Iterable[str | Path] = (), catalog: Catalog | None = None
) -> ValidationResult:
    """Validate one blueprint (a YAML file, or a CSAR as zip or folder)."""
    # The checks allocate many small acyclic objects; the cycle collector would rescan them all
    # again and again (a third of the run on large templates) and find nothing to free.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _validate(path, catalogs, catalog)
    finally:
        if was_enabled:
            gc.enable()


def _validate(
    path: str | Path, catalogs: Iterable[str | Path], catalog: Catalog | None
) -> ValidationResult:
    entry = Path(path)
    run = _Run(catalog or default_catalog(catalogs))
    run.confinement = Confinement.of(entry, run.catalog)
    normative = builtin_types_dir() / NORMATIVE_FILE
    run.load(normative, imported_from=None, builtin=True)
    preloaded: LoadedFile | None = None
    if entry.is_dir() or (entry.is_file() and entry.suffix.lower() in (".zip", ".csar")):
        found = csar_entry(entry, run.reporter)  # reports why it is not a CSAR
        if found is None:
            return ValidationResult(str(entry), _sorted(run.reporter.diagnostics))
        entry, preloaded = found
    if not entry.exists() and preloaded is None:
        run.reporter.add(
            Diagnostic(
                "document.missing", Severity.ERROR, f"no such file: {entry}", Location(str(entry))
            )
        )
        return ValidationResult(str(entry), _sorted(run.reporter.diagnostics))
    main = run.load(entry, imported_from=None, preloaded=preloaded)
    values = ValueChecker(run.registry, run.reporter, lambda v, w, c: functions.check(v, w, c))
    functions = FunctionChecker(run.reporter)
    definitions = DefinitionChecker(run.registry, values, run.reporter)
    values.require_fields = not run.alien
    topology_data = (
        main.data.get("topology_template")
        if main is not None and isinstance(main.data, dict)
        else None
    )
    if isinstance(topology_data, dict) and isinstance(topology_data.get("inputs"), dict):
        functions.inputs = topology_data["inputs"]  # types' defaults may read them too
    definitions.check_all(run.typedefs)
    if main is not None and isinstance(main.data, dict):
        topology = main.data.get("topology_template")
        checker = TopologyChecker(
            run.registry, values, functions, definitions, run.reporter, lenient=run.alien
        )
        checker.confinement = run.confinement
        if isinstance(topology, dict):
            checker.check(topology, Where(main, ("topology_template",)))
    run.library_summary(main)
    return ValidationResult(
        str(entry),
        _sorted(run.reporter.diagnostics),
        list(run.files.values()),
        run.registry,
        main,
        run.confinement,
    )


TOSCA_KEYNAMES = frozenset(grammar.schema()["properties"])


_PLAIN_NUMBER = re.compile(r"[^\s,\]}#]+")


def _written(loaded: LoadedFile, path: tuple[str, ...], value: int | float) -> str:
    """The text a number was written as in ``loaded`` (``007`` stays ``007``), else its
    usual form."""
    fallback = scalar_text(value)
    location = loaded.location(path)
    line = loaded.line_text(location.line) if location.line else None
    if line is not None and location.col:
        found = _PLAIN_NUMBER.match(line, location.col - 1)
        if found is not None:
            text = found.group()
            try:
                if resolve_plain(text) == value:
                    return text
            except ValueError:
                pass
    return fallback


def _is_tosca(loaded: LoadedFile) -> bool:
    """Whether a loaded file is TOSCA, and so may be quoted in diagnostics: it declares
    tosca_definitions_version, or (an imported type file may leave it out) all its keys are
    TOSCA keynames. An empty file is checked as TOSCA (there is nothing to quote)."""
    data = loaded.data
    if data is None:
        return True
    if not isinstance(data, dict):
        return False
    return "tosca_definitions_version" in data or all(
        isinstance(k, str) and k in TOSCA_KEYNAMES for k in data
    )


def _may_quote(raw: bytes) -> bool:
    """Whether a file that is not even YAML may be quoted: only one that says it is TOSCA."""
    return b"tosca_definitions_version" in raw


_QUOTED = re.compile(r"\s*(?:'(?!<[a-z ]+>')[^']*'|\"[^\"]*\")")


def _unquoted(diagnostic: Diagnostic) -> Diagnostic:
    """A syntax error without the fragments of the source its message quotes."""
    message = _QUOTED.sub("", diagnostic.message)
    return replace(diagnostic, message=message) if message != diagnostic.message else diagnostic


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=Diagnostic.sort_key)
