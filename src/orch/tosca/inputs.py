"""Deployment inputs: read from files and ``-i name=value`` pairs, checked against the
blueprint's input definitions before anything runs, with file:line:col for each problem."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import Diagnostic, Location, Severity
from orch.tosca.loader import (
    MAX_INPUTS_BYTES,
    LoadedFile,
    YamlError,
    as_error,
    load_bytes,
    load_file,
    yaml_error_diagnostics,
)
from orch.tosca.types import TypeRegistry
from orch.tosca.values import ValueChecker, is_function

_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|private_?key|credential", re.I)


@dataclass
class GivenInputs:
    """Input values with where each was written (a file, or the command line)."""

    values: dict[str, Any] = field(default_factory=dict)
    places: dict[str, Where] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def read_inputs(specs: list[str]) -> GivenInputs:
    """``-i`` arguments: a YAML file of name: value, or one ``name=value`` (value is YAML).

    Read as blueprints are (regular files only, at most ``MAX_INPUTS_BYTES``, aliases and
    integers bounded); a duplicate key is an error: no value silently wins."""
    given = GivenInputs()
    for number, spec in enumerate(specs, 1):
        if "=" in spec and not _looks_like_file(spec):
            name, _, text = spec.partition("=")
            raw = f"{name.strip()}: {text}\n".encode()
            source = f"<-i #{number}>"
            try:
                loaded = load_bytes(raw, source)
            except YamlError as exc:
                if exc.diagnostic.rule != "yaml.syntax":  # YAML, but refused (an alias bomb...)
                    given.diagnostics.extend(yaml_error_diagnostics(exc))
                    continue
                # not YAML: keep the text as it is
                loaded = load_bytes(f"{name.strip()}: {_quote(text)}\n".encode(), source)
        else:
            try:
                loaded = load_file(spec, MAX_INPUTS_BYTES, "an inputs file")
            except YamlError as exc:
                given.diagnostics.extend(yaml_error_diagnostics(exc))
                continue
            except OSError as exc:
                given.diagnostics.append(
                    Diagnostic(
                        "inputs.read",
                        Severity.ERROR,
                        f"cannot read inputs file '{spec}': {exc.strerror or exc}",
                        Location(spec),
                        "give a YAML file of name: value, or name=value",
                    )
                )
                continue
        _collect(loaded, given)
    return given


def _looks_like_file(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml", ".json")) and "=" not in spec.split("/")[-1]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _collect(loaded: LoadedFile, given: GivenInputs) -> None:
    given.diagnostics.extend(as_error(d) for d in loaded.warnings)
    data = loaded.data
    if data is None:
        return
    root = Where(loaded, ())
    if not isinstance(data, dict):
        reporter = Reporter()
        reporter.error("inputs.shape", root, "an inputs file is a map of input names to values")
        given.diagnostics.extend(reporter.diagnostics)
        return
    for name, value in data.items():
        given.values[str(name)] = value
        given.places[str(name)] = root / name


def check_inputs(
    registry: TypeRegistry, definitions: dict[str, Any], given: GivenInputs
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """The inputs a deployment runs with (given values, else defaults) and what is wrong."""
    reporter = Reporter()
    checker = ValueChecker(registry, reporter, lambda v, w, c: None)
    values: dict[str, Any] = {}
    for name in given.values:
        if name not in definitions:
            reporter.unknown(
                "inputs.unknown",
                given.places[name],
                f"the blueprint declares no input '{name}'",
                name,
                definitions,
            )
    for name, definition in definitions.items():
        definition = definition if isinstance(definition, dict) else {}
        if name in given.values:
            value = given.values[name]
            where = given.places[name]
            schema = checker.schema_of(definition, where)
            if schema is not None and not is_function(value):
                checker.check(value, schema, where)
            values[name] = value
        elif "value" in definition:
            values[name] = definition["value"]
        elif "default" in definition:
            values[name] = definition["default"]
        elif definition.get("required", True) is not False:
            described = definition.get("description")
            type_name = definition.get("type", "string")
            reporter.add(
                Diagnostic(
                    "inputs.missing",
                    Severity.ERROR,
                    f"input '{name}' ({type_name}) has no value and no default"
                    + (f": {described}" if isinstance(described, str) else ""),
                    Location("<inputs>"),
                    f"pass it with -i {name}=VALUE or in an inputs file (-i inputs.yaml)",
                )
            )
    return values, [*given.diagnostics, *reporter.diagnostics]


def secret_inputs(definitions: dict[str, Any]) -> set[str]:
    """Inputs whose values are never stored nor shown: named like a password/token/key, or
    marked ``metadata: {sensitive: true}``."""
    secret = set()
    for name, definition in definitions.items():
        metadata = definition.get("metadata") if isinstance(definition, dict) else None
        flagged = isinstance(metadata, dict) and str(metadata.get("sensitive")).lower() == "true"
        if flagged or _SECRET_NAME.search(name):
            secret.add(name)
    return secret
