"""Interfaces, operations, their inputs and the artifacts they name (the files on disk).

An interface assignment names operations its type declares; operation inputs are checked
against their definitions; an implementation is an artifact of the node or a file beside the
blueprint, which must exist and stay inside the blueprint's root and the catalogs. Apart
because it is the one check that looks at the file system (with a cache of what it found).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orch.tosca.checks.index import TopologyIndex
from orch.tosca.context import Reporter, Where
from orch.tosca.functions import FunctionChecker, FunctionContext
from orch.tosca.imports import OUTSIDE_HINT, Confinement, zip_member_exists
from orch.tosca.states import BUILTIN_ARTIFACTS
from orch.tosca.types import TypeDef, TypeRegistry, entries, interface_operations, same_interface
from orch.tosca.values import NOT_COMPILED as _NOT_COMPILED
from orch.tosca.values import ValueChecker

_UNSEEN = (None, "")  # not looked for yet
_NO_INPUTS: dict[str, Any] = {}  # an operation that declares no inputs (only ever read)
# an interface definition; its operations; its inputs; each declared operation's inputs
_Declared = tuple[Any, set[str], dict[str, Any], dict[str, dict[str, Any]]]


class InterfaceChecker:
    """Interface and artifact assignments of node and relationship templates."""

    def __init__(
        self,
        registry: TypeRegistry,
        index: TopologyIndex,
        values: ValueChecker,
        functions: FunctionChecker,
        reporter: Reporter,
    ):
        self.registry = registry
        self.index = index
        self.values = values
        self.functions = functions
        self.reporter = reporter
        self.confinement: Confinement | None = None
        """Where artifacts may be: one outside is an error, never read."""
        self._existing: dict[tuple[str, str], tuple[Any, str]] = {}
        self._known: dict[tuple[int, str], _Declared] = {}

    # ------------------------------------------------------------------ interfaces
    def interfaces(
        self,
        assigned: Any,
        declared: dict[str, tuple[Any, TypeDef]],
        where: Where,
        context: FunctionContext,
        owner: str,
        node: str | None,
    ) -> None:
        if not isinstance(assigned, dict):
            return
        for iname, body in assigned.items():
            found = declared.get(same_interface(declared, iname, body))
            if found is None:
                if iname in ("Standard", "Configure", "tosca.interfaces.node.lifecycle.Standard"):
                    found = (
                        {
                            "type": "tosca.interfaces.node.lifecycle.Standard"
                            if "Standard" in iname
                            else "tosca.interfaces.relationship.Configure"
                        },
                        None,
                    )  # type: ignore[assignment]
                else:
                    self.reporter.unknown(
                        "topology.unknown-interface",
                        where / iname,
                        f"unknown interface '{iname}' for {owner}",
                        iname,
                        declared,
                    )
                    continue
            if not isinstance(body, dict):
                continue
            _definition, known, shared, declared_inputs = self._declared(found[0], iname)
            operations = interface_operations(body)
            op_base = where / iname / "operations" if "operations" in body else where / iname
            inputs = body.get("inputs")
            if isinstance(inputs, dict):
                self._inputs(inputs, (shared,), where / iname, context, "inputs")
            for op_name, op in operations.items():
                if known and op_name not in known:
                    self.reporter.unknown(
                        "topology.unknown-operation",
                        op_base / op_name,
                        f"interface '{iname}' has no operation '{op_name}'",
                        op_name,
                        known,
                    )
                    continue
                own = declared_inputs.get(op_name, _NO_INPUTS)
                self._operation(op, op_base / op_name, context, node, (own, shared))

    def _declared(self, definition: Any, interface: str) -> _Declared:
        """What an interface definition declares: the operations it allows, its inputs and each
        operation's inputs (cached: templates of one node type repeat the same definition)."""
        key = (id(definition), interface)
        found = self._known.get(key)
        if found is None:
            operations = interface_operations(definition) if isinstance(definition, dict) else {}
            found = (
                definition,  # held: keeps its id unique
                self.index.operations(definition, None, interface),
                _input_definitions(definition),
                {name: _input_definitions(op) for name, op in operations.items()},
            )
            self._known[key] = found
        return found

    def _inputs(
        self,
        inputs: dict[str, Any],
        definitions: tuple[dict[str, Any], ...],
        parent: Where,
        context: FunctionContext,
        key: str,
    ) -> None:
        """Input values against the input definitions of the operation or interface, if typed.

        The inputs' place (``parent / key``) is built only for a value that needs a look."""
        values = self.values
        where: Where | None = None
        for name, value in inputs.items():
            schema = None
            for declared in definitions:
                definition = declared.get(name)
                if type(definition) is dict and "type" in definition:
                    schema = values.cached_schema(definition)
                    if schema is _NOT_COMPILED:
                        where = where or parent / key
                        schema = values.schema_of(definition, where / name)
                    break
            if schema is not None:
                if not values.known_clean(value, schema, context):
                    where = where or parent / key
                    values.check(value, schema, where / name, context)
            elif type(value) in (dict, list):
                where = where or parent / key
                self.functions.check_value(value, where / name, context)

    def _operation(
        self,
        op: Any,
        where: Where,
        context: FunctionContext,
        node: str | None,
        definitions: tuple[dict[str, Any], ...] = (),
    ) -> None:
        implementation = op.get("implementation") if isinstance(op, dict) else op
        if isinstance(op, dict) and isinstance(op.get("inputs"), dict):
            self._inputs(op["inputs"], definitions, where, context, "inputs")
        if (
            type(implementation) is str
            and self._existing.get((where.file.path, implementation), _UNSEEN)[0] is True
        ):
            return  # the commonest implementation: a script already found beside the file
        impl_where = where / "implementation" if isinstance(op, dict) else where
        primary = implementation
        dependencies: list[Any] = []
        if isinstance(implementation, dict) and "file" in implementation:
            pass  # Alien4Cloud/Yorc's form: the artifact definition itself
        elif isinstance(implementation, dict):
            primary = implementation.get("primary")
            impl_where = impl_where / "primary"
            deps = implementation.get("dependencies")
            dependencies = deps if isinstance(deps, list) else []
        self._artifact_file(primary, impl_where, node)
        for i, dep in enumerate(dependencies):
            base = where / "implementation" / "dependencies" / i
            self._artifact_file(dep, base, node)

    # ------------------------------------------------------------------ artifacts
    def artifacts(self, artifacts: Any, where: Where) -> None:
        """A template's artifact definitions: known types, files that exist."""
        for name, definition in entries(artifacts):
            at = where / name
            if isinstance(definition, dict):
                if "type" in definition:
                    self.registry.require("artifact_types", definition["type"], at / "type")
                if definition.get("repository") is None and isinstance(definition.get("file"), str):
                    file = definition["file"]
                    if "://" not in file:
                        self._file_exists(file, at / "file", "artifact")
            elif isinstance(definition, str) and "://" not in definition:
                self._file_exists(definition, at, "artifact")

    def _artifact_file(self, reference: Any, where: Where, node: str | None) -> None:
        """An implementation names an artifact of the node, or a file that must exist."""
        if isinstance(reference, dict):
            file = reference.get("file")
            if reference.get("repository") is not None or self._builtin(reference.get("type")):
                return
            where = where / "file"
        else:
            file = reference
        if not isinstance(file, str) or not file:
            return
        if node is not None and self.index.is_artifact(node, file):
            return
        if "://" in file or file.startswith("<"):
            return
        self._file_exists(file, where, "implementation artifact")

    def _builtin(self, artifact_type: Any) -> bool:
        """An artifact type of orch's own executors: its file names the executor."""
        typedef = self.registry.get("artifact_types", artifact_type)
        return any(self.registry.is_a(typedef, name) for name in BUILTIN_ARTIFACTS)

    def _file_exists(self, file: str, where: Where, what: str) -> None:
        key = (where.file.path, file)
        verdict = self._existing.get(key)  # templates name the same few scripts again and again
        if verdict is None:
            verdict = self._find_file(file, where.file.path)
            self._existing[key] = verdict
        found, path = verdict
        if found is None:
            return
        if found == "outside":
            assert self.confinement is not None
            self.reporter.error(
                "topology.artifact-outside-root",
                where,
                f"{what} '{file}' is outside {self.confinement.describe()}: not read",
                OUTSIDE_HINT,
            )
            return
        if found:
            return
        # A warning: a CSAR or the site may still provide it; deploy refuses to run without it.
        self.reporter.warning(
            "topology.missing-artifact",
            where,
            f"{what} '{file}' not found (looked at {os.path.normpath(path)})",
            "paths are relative to the file that names them",
        )

    def _find_file(self, file: str, source: str) -> tuple[Any, str]:
        """(None: not looked for, "outside": outside the root, or whether it exists; path)."""
        if os.path.isabs(file):
            return None, file  # a path on the target host, not beside the blueprint
        path = os.path.join(os.path.dirname(source), file)
        if self.confinement is not None and not self.confinement.contains(path):
            return "outside", path
        return os.path.exists(path) or zip_member_exists(Path(path)), path


def _input_definitions(definition: Any) -> dict[str, Any]:
    """The ``inputs`` of an interface or operation definition (a map, or nothing)."""
    inputs = definition.get("inputs") if isinstance(definition, dict) else None
    return inputs if isinstance(inputs, dict) else {}
