"""Checks of type definitions: parents, refinements, and every type a definition names."""

from __future__ import annotations

from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.types import (
    ROOT_TYPES,
    TypeDef,
    TypeRegistry,
    entries,
    interface_operations,
)
from orch.tosca.values import (
    PRIMITIVES,
    UNBOUNDED,
    Invalid,
    ValueChecker,
    constraint_clauses,
    parse_version,
)


class DefinitionChecker:
    def __init__(self, registry: TypeRegistry, values: ValueChecker, reporter: Reporter):
        self.registry = registry
        self.values = values
        self.reporter = reporter

    def check_all(self, typedefs: list[TypeDef]) -> None:
        for typedef in typedefs:
            self.reporter.guard(
                typedef.where, typedef.name, lambda typedef=typedef: self.check(typedef)
            )

    def check(self, typedef: TypeDef) -> None:
        registry, body, where = self.registry, typedef.body, typedef.where
        parent_name = body.get("derived_from")
        if parent_name is not None:
            if (
                typedef.kind == "data_types"
                and isinstance(parent_name, str)
                and parent_name in PRIMITIVES
            ):
                if "properties" in body:
                    self.reporter.error(
                        "types.primitive-with-properties",
                        where / "properties",
                        f"data type {typedef.name} derives from the primitive '{parent_name}' "
                        "and cannot add properties",
                        "derive from tosca.datatypes.Root instead",
                        key=True,
                    )
            else:
                parent = registry.require(
                    typedef.kind, parent_name, where / "derived_from", "types.unknown-parent"
                )
                if parent is not None:
                    cycle = registry.find_cycle(typedef)
                    if cycle:
                        self.reporter.error(
                            "types.cycle",
                            where / "derived_from",
                            "derived_from cycle: " + " -> ".join(cycle),
                        )
                        return
        elif typedef.name not in ROOT_TYPES and not typedef.builtin:
            pass  # TOSCA allows types with no parent
        if body.get("version") is not None:
            self.version(body["version"], where / "version", typedef.where.file.data)
        handler = getattr(self, "_" + typedef.kind, None)
        if handler is not None:
            handler(typedef)
        self._parameters(typedef, "properties")
        self._parameters(typedef, "attributes")
        if "interfaces" in body:
            self._interfaces(typedef)

    def version(self, value: Any, where: Where, document: Any) -> None:
        """A version keyname: TOSCA's <major>.<minor>[.<fix>[.<qualifier>[-<build>]]]; files of
        the Alien4Cloud and Yorc dialects also use Maven-style versions (1.0.0-SNAPSHOT)."""
        dialect = document.get("tosca_definitions_version") if isinstance(document, dict) else None
        loose = isinstance(dialect, str) and dialect.startswith(("alien_dsl_", "yorc_"))
        try:
            parse_version(value, loose=loose)
        except Invalid as exc:
            self.reporter.error(
                "types.version",
                where,
                str(exc),
                "examples: 1.0, 2.1.3, 1.0.0.beta, 1.0.0.beta-2 (a qualifier and a numeric build)",
            )

    # ------------------------------------------------------------------ members
    def _parameters(self, typedef: TypeDef, section: str) -> None:
        raw = typedef.body.get(section)
        if not isinstance(raw, dict):
            return
        inherited = {}
        parent = self.registry.parent(typedef)
        if parent is not None:
            inherited = self.registry.members(parent, section)
        for name, definition in raw.items():
            at = typedef.where / section / name
            self.parameter_definition(definition, at)
            if name in inherited and isinstance(definition, dict):
                self._refinement(name, definition, inherited[name], at, section)

    def parameter_definition(self, definition: Any, where: Where) -> None:
        """A property/attribute/input definition: its type exists, its default fits it."""
        if not isinstance(definition, dict):
            return
        type_name = definition.get("type")
        if type_name is not None and not self.values.resolves(type_name):
            self.reporter.error(
                "types.unknown-data-type",
                where / "type",
                f"unknown data type '{type_name}'",
                did_you_mean(
                    str(type_name),
                    [*sorted(PRIMITIVES - {"any"}), *self.registry.names("data_types")],
                ),
            )
            return
        for schema_key in ("entry_schema", "key_schema"):
            inner = definition.get(schema_key)
            inner_type = (
                inner
                if isinstance(inner, str)
                else (inner.get("type") if isinstance(inner, dict) else None)
            )
            if inner_type is not None and not self.values.resolves(inner_type):
                at = where / schema_key if isinstance(inner, str) else where / schema_key / "type"
                self.reporter.error(
                    "types.unknown-data-type",
                    at,
                    f"unknown data type '{inner_type}'",
                    did_you_mean(
                        str(inner_type),
                        [*sorted(PRIMITIVES - {"any"}), *self.registry.names("data_types")],
                    ),
                )
                return
            if isinstance(inner, dict) and inner.get("constraints") is not None:
                self._constraints(
                    inner["constraints"],
                    where / schema_key / "constraints",
                    self.values.schema_of(inner, where / schema_key),
                )
        if type_name is None:
            return
        schema = self.values.schema_of(definition, where)
        if definition.get("constraints") is not None:
            self._constraints(definition["constraints"], where / "constraints", schema)
        if schema is None:
            return
        for key in ("default", "value"):
            if key in definition and definition[key] is not None:
                self.values.check(definition[key], schema, where / key)

    def _constraints(self, raw: Any, where: Where, schema: Any) -> None:
        """Each clause of a constraints keyname; a single map is accepted with a warning."""
        if isinstance(raw, dict) and len(raw) == 1:
            self.reporter.warning(
                "constraint.single-map",
                where,
                "constraints is a single clause, not a list of clauses; read as a list of one",
                f"write a list, as TOSCA does (tosca-parser and xOpera need it): "
                f"constraints: [ {_flow(raw)} ]",
                key=True,
            )
        for clause, at in constraint_clauses(raw, where):
            self.values.check_constraint_clause(clause, at, schema)

    def _refinement(
        self,
        name: str,
        definition: dict[str, Any],
        inherited: tuple[Any, TypeDef],
        where: Where,
        section: str,
    ) -> None:
        base, owner = inherited
        if not isinstance(base, dict):
            return
        new_type, old_type = definition.get("type"), base.get("type")
        if new_type is None or old_type is None or new_type == old_type:
            return
        new_def = self.registry.get("data_types", new_type)
        old_def = self.registry.get("data_types", old_type)
        if new_def is not None and old_def is not None and self.registry.is_a(new_def, old_def):
            return
        if new_def is not None and old_type in PRIMITIVES:
            primitive = self.values._resolve_type(new_type)[0]
            if primitive == old_type:
                return
        self.reporter.error(
            "types.refinement",
            where / "type",
            f"{section[:-1] if section != 'properties' else 'property'} '{name}' is "
            f"{old_type} in {owner.name}; a derived type may not change it to {new_type}",
        )

    def _interfaces(self, typedef: TypeDef) -> None:
        raw = typedef.body.get("interfaces")
        if not isinstance(raw, dict):
            return
        for name, definition in raw.items():
            if not isinstance(definition, dict):
                continue
            type_name = definition.get("type")
            if type_name is not None:
                self.registry.require(
                    "interface_types", type_name, typedef.where / "interfaces" / name / "type"
                )
            inputs = definition.get("inputs")
            if isinstance(inputs, dict):
                for input_name, input_def in inputs.items():
                    if isinstance(input_def, dict) and "type" in input_def:
                        self.parameter_definition(
                            input_def, typedef.where / "interfaces" / name / "inputs" / input_name
                        )

    # ------------------------------------------------------------------ kinds
    def _node_types(self, typedef: TypeDef) -> None:
        self._capability_definitions(typedef)
        self._requirement_definitions(typedef)
        self._artifact_definitions(typedef)

    def _relationship_types(self, typedef: TypeDef) -> None:
        self._type_list(typedef, "valid_target_types", "capability_types")
        self._type_list(typedef, "valid_source_types", "node_types")

    def _capability_types(self, typedef: TypeDef) -> None:
        self._type_list(typedef, "valid_source_types", "node_types")

    def _group_types(self, typedef: TypeDef) -> None:
        self._type_list(typedef, "members", "node_types", also=("group_types",))
        self._capability_definitions(typedef)
        self._requirement_definitions(typedef)

    def _policy_types(self, typedef: TypeDef) -> None:
        self._type_list(typedef, "targets", "node_types", also=("group_types",))

    def _interface_types(self, typedef: TypeDef) -> None:
        body = typedef.body
        operations = interface_operations(body)
        for name, operation in operations.items():
            if isinstance(operation, dict) and "implementation" in operation:
                self.reporter.warning(
                    "types.interface-implementation",
                    typedef.where / ("operations" if "operations" in body else name) / name
                    if "operations" in body
                    else typedef.where / name / "implementation",
                    f"operation '{name}' of interface type {typedef.name} has an implementation;"
                    " implementations belong in node or relationship types and templates",
                )
            if isinstance(operation, dict) and isinstance(operation.get("inputs"), dict):
                base = (
                    typedef.where / "operations" / name
                    if "operations" in body
                    else typedef.where / name
                )
                for input_name, input_def in operation["inputs"].items():
                    if isinstance(input_def, dict) and "type" in input_def:
                        self.parameter_definition(input_def, base / "inputs" / input_name)

    def _type_list(self, typedef: TypeDef, key: str, kind: str, also: tuple[str, ...] = ()) -> None:
        names = typedef.body.get(key)
        if not isinstance(names, list):
            return
        for i, name in enumerate(names):
            if any(self.registry.get(k, name) is not None for k in (kind, *also)):
                continue
            self.registry.require(kind, name, typedef.where / key / i)

    def _capability_definitions(self, typedef: TypeDef) -> None:
        for name, definition in entries(typedef.body.get("capabilities")):
            at = typedef.where / "capabilities" / name
            type_name = (
                definition
                if isinstance(definition, str)
                else (definition.get("type") if isinstance(definition, dict) else None)
            )
            if type_name is None:
                continue
            captype = self.registry.require(
                "capability_types",
                type_name,
                at if isinstance(definition, str) else at / "type",
                "types.unknown-capability-type",
            )
            if isinstance(definition, dict):
                sources = definition.get("valid_source_types")
                if isinstance(sources, list):
                    for i, source in enumerate(sources):
                        self.registry.require("node_types", source, at / "valid_source_types" / i)
                self._occurrences(definition.get("occurrences"), at / "occurrences")
                if captype is not None and isinstance(definition.get("properties"), dict):
                    declared = self.registry.members(captype, "properties")
                    for prop, value in definition["properties"].items():
                        if prop in declared and isinstance(value, dict) and "type" in value:
                            self.parameter_definition(value, at / "properties" / prop)

    def _requirement_definitions(self, typedef: TypeDef) -> None:
        raw = typedef.body.get("requirements")
        if not isinstance(raw, list):
            return
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or len(item) != 1:
                continue
            ((name, definition),) = item.items()
            at = typedef.where / "requirements" / i / name
            if isinstance(definition, str):
                self._capability_or_type(definition, at)
                continue
            if not isinstance(definition, dict):
                continue
            capability = definition.get("capability")
            if capability is not None:
                self._capability_or_type(capability, at / "capability")
            node = definition.get("node")
            if node is not None:
                self.registry.require("node_types", node, at / "node")
            relationship = definition.get("relationship")
            rel_name = relationship.get("type") if isinstance(relationship, dict) else relationship
            if rel_name is not None:
                rel_at = (
                    at / "relationship" / "type"
                    if isinstance(relationship, dict)
                    else at / "relationship"
                )
                self.registry.require("relationship_types", rel_name, rel_at)
            self._occurrences(definition.get("occurrences"), at / "occurrences")

    def _capability_or_type(self, name: Any, where: Where) -> None:
        if self.registry.get("capability_types", name) is None:
            self.registry.require("capability_types", name, where, "types.unknown-capability-type")

    def _artifact_definitions(self, typedef: TypeDef) -> None:
        for name, definition in entries(typedef.body.get("artifacts")):
            if isinstance(definition, dict) and "type" in definition:
                self.registry.require(
                    "artifact_types",
                    definition["type"],
                    typedef.where / "artifacts" / name / "type",
                )

    def _occurrences(self, value: Any, where: Where) -> None:
        if value is None:
            return
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int)
            and (value[1] == UNBOUNDED or (isinstance(value[1], int) and value[1] >= value[0]))
        )
        ok = ok and not isinstance(value[0], bool) and value[0] >= 0
        if not ok:
            self.reporter.error(
                "types.occurrences",
                where,
                "occurrences must be [min, max] with 0 <= min <= max (max may be UNBOUNDED)",
            )


def _flow(clause: dict[str, Any]) -> str:
    """A one-operator clause in YAML flow style, for hints."""
    ((op, operand),) = clause.items()
    return f"{{{op}: {operand}}}"
