"""Node templates: the type, property and attribute assignments, capability assignments.

It checks what belongs to one node template and hands its requirements, interfaces, artifacts
and node filter to the checks of those sections. Apart because it is the entry point for a node:
the order of the sections here is the order in which a node's findings are reported.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.assignments import AssignmentChecker
from orch.tosca.checks.index import TopologyIndex
from orch.tosca.checks.interfaces import InterfaceChecker
from orch.tosca.checks.requirements import RequirementChecker
from orch.tosca.context import Reporter, Where
from orch.tosca.functions import FunctionContext
from orch.tosca.types import TypeDef, TypeRegistry


class NodeTemplateChecker:
    """Checks one node template against its node type."""

    def __init__(
        self,
        registry: TypeRegistry,
        index: TopologyIndex,
        assignments: AssignmentChecker,
        requirements: RequirementChecker,
        interfaces: InterfaceChecker,
        reporter: Reporter,
    ):
        self.registry = registry
        self.index = index
        self.assignments = assignments
        self.requirements = requirements
        self.interfaces = interfaces
        self.reporter = reporter

    def check(self, name: str, body: dict[str, Any], where: Where) -> None:
        type_name = body.get("type")
        if type_name is None:
            if "copy" not in body:
                self.reporter.error(
                    "topology.missing-type", where, f"node template '{name}' has no type"
                )
            return
        node_type = self.registry.require("node_types", type_name, where / "type")
        if node_type is None:
            return
        context = FunctionContext(node=name)
        owner = f"node type {node_type.name}"
        members = self.registry.members
        assignments = self.assignments.check
        abstract = "directives" in body and bool(
            {"substitute", "select"} & _names(body.get("directives"))
        )
        assignments(
            body.get("properties"),
            members(node_type, "properties"),
            where / "properties",
            context,
            owner,
            required=True,
            label="property",
            abstract=abstract,
        )
        # (sections a template leaves out cost nothing, not even their place)
        if body.get("attributes") is not None:
            assignments(
                body["attributes"],
                members(node_type, "attributes"),
                where / "attributes",
                context,
                owner,
                required=False,
                label="attribute",
            )
        if body.get("capabilities") is not None:
            self._capabilities(body["capabilities"], node_type, where / "capabilities", context)
        requirements = body.get("requirements")
        counts = (
            self.requirements.check(name, requirements, node_type, where / "requirements")
            if isinstance(requirements, list)
            else {}
        )
        if not abstract:
            self.requirements.missing(name, body, node_type, counts, where)
        if body.get("interfaces") is not None:
            self.interfaces.interfaces(
                body["interfaces"],
                members(node_type, "interfaces"),
                where / "interfaces",
                context,
                owner,
                name,
            )
        if body.get("artifacts") is not None:
            self.interfaces.artifacts(body["artifacts"], where / "artifacts")
        if "node_filter" in body:
            self.requirements.node_filter(body["node_filter"], where / "node_filter", node_type)

    def _capabilities(
        self, assigned: Any, node_type: TypeDef, where: Where, context: FunctionContext
    ) -> None:
        if not isinstance(assigned, dict):
            return
        declared = self.registry.members(node_type, "capabilities")
        for cap_name, body in assigned.items():
            if cap_name not in declared:
                self.reporter.unknown(
                    "topology.unknown-capability",
                    where / cap_name,
                    f"unknown capability '{cap_name}' for node type {node_type.name}",
                    cap_name,
                    declared,
                )
                continue
            captype = self.index.capability_type_of(node_type, cap_name)
            if captype is None or not isinstance(body, dict):
                continue
            definition = declared[cap_name][0]
            cap_props = dict(self.registry.members(captype, "properties"))
            if isinstance(definition, dict) and isinstance(definition.get("properties"), dict):
                for prop, prop_def in definition["properties"].items():
                    if isinstance(prop_def, dict) and "type" in prop_def:
                        cap_props[prop] = (prop_def, declared[cap_name][1])
            self.assignments.check(
                body.get("properties"),
                cap_props,
                where / cap_name / "properties",
                context,
                f"capability type {captype.name}",
                required=False,
                label="property",
            )
            self.assignments.check(
                body.get("attributes"),
                self.registry.members(captype, "attributes"),
                where / cap_name / "attributes",
                context,
                f"capability type {captype.name}",
                required=False,
                label="attribute",
            )


def _names(value: Any) -> set[str]:
    """The strings of a list (directives, ...); anything else has none."""
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()
