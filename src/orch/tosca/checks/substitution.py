"""Substitution mappings: the node type a topology stands for, and how its properties,
attributes, capabilities and requirements map onto inputs, outputs and node templates.

Apart because it looks at the topology from outside (as the node it substitutes), and names
members of the node templates only to map them.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.index import NODE_RUNTIME, TopologyIndex
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.functions import FunctionChecker
from orch.tosca.types import TypeDef, TypeRegistry
from orch.tosca.values import ValueChecker


class SubstitutionChecker:
    """Checks a topology's substitution_mappings against the node type it substitutes."""

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
        self.functions = functions  # its inputs: what a property maps to
        self.reporter = reporter

    def check(self, mapping: dict[str, Any], where: Where) -> None:
        """The substituted node type, and what each of its members maps to."""
        node_type_name = mapping.get("node_type")
        node_type = (
            self.registry.require("node_types", node_type_name, where / "node_type")
            if node_type_name is not None
            else None
        )
        self._property_mappings(mapping.get("properties"), node_type, where / "properties")
        self._attribute_mappings(mapping.get("attributes"), node_type, where / "attributes")
        for section, members in (
            ("capabilities", "capabilities"),
            ("requirements", "requirements"),
        ):
            raw = mapping.get(section)
            if not isinstance(raw, dict):
                continue
            declared = self.registry.members(node_type, members) if node_type else None
            for name, target in raw.items():
                if declared is not None and name not in declared:
                    self.reporter.error(
                        "topology.substitution",
                        where / section / name,
                        f"node type {node_type.name} has no {section[:-1]} '{name}'",  # type: ignore[union-attr]
                        did_you_mean(str(name), declared),
                        key=True,
                    )
                if isinstance(target, list) and len(target) >= 2:
                    node, member = target[0], target[1]
                    if not isinstance(node, str) or node not in self.index.nodes:
                        self.reporter.error(
                            "topology.substitution",
                            where / section / name / 0,
                            f"substitution maps to unknown node template '{node}'",
                            did_you_mean(str(node), self.index.nodes),
                        )
                        continue
                    ntype = self.index.node_type_of(node)
                    if ntype is not None and (
                        not isinstance(member, str)
                        or member not in self.registry.members(ntype, members)
                    ):
                        self.reporter.error(
                            "topology.substitution",
                            where / section / name / 1,
                            f"node template '{node}' has no {section[:-1]} '{member}'",
                            did_you_mean(str(member), self.registry.members(ntype, members)),
                        )

    def _property_mappings(self, raw: Any, node_type: TypeDef | None, where: Where) -> None:
        """Each property of the substituted type maps to an input (TOSCA 1.3, 3.8.8), to a
        node template's property (the deprecated [node, property] form) or to a value."""
        if not isinstance(raw, dict):
            return
        declared = self.registry.members(node_type, "properties") if node_type else None
        inputs = self.functions.inputs
        for name, target in raw.items():
            at = where / name
            if declared is not None and name not in declared:
                self.reporter.unknown(
                    "topology.substitution",
                    at,
                    f"node type {node_type.name} has no property '{name}'",  # type: ignore[union-attr]
                    name,
                    declared,
                )
                continue
            mapped, mapped_at = target, at
            if isinstance(target, dict) and "mapping" in target:
                mapped, mapped_at = target["mapping"], at / "mapping"
            elif isinstance(target, dict) and "value" in target:
                mapped, mapped_at = None, at / "value"
                definition = declared.get(name) if declared is not None else None
                if definition is not None:
                    schema = self.values.schema_of(definition[0], at)
                    if schema is not None and target["value"] is not None:
                        self.values.check(target["value"], schema, mapped_at)
            if not isinstance(mapped, list):
                continue
            if len(mapped) == 1:
                if not isinstance(mapped[0], str) or mapped[0] not in inputs:
                    self.reporter.error(
                        "topology.substitution",
                        mapped_at / 0,
                        f"property '{name}' is mapped to undeclared input '{mapped[0]}'",
                        did_you_mean(str(mapped[0]), inputs)
                        or "declare it under topology_template.inputs",
                    )
            elif len(mapped) == 2:
                self._mapped_member(mapped, mapped_at, "properties", "property")
            else:
                self.reporter.error(
                    "topology.substitution",
                    mapped_at,
                    f"property mapping of '{name}' has {len(mapped)} entries",
                    "map a property to [ input_name ] (or, deprecated, [ node_template, "
                    "property ])",
                )

    def _attribute_mappings(self, raw: Any, node_type: TypeDef | None, where: Where) -> None:
        """Attributes map to an output ([ output ]) or a node's attribute ([ node, attribute ])."""
        if not isinstance(raw, dict):
            return
        declared = self.registry.members(node_type, "attributes") if node_type else None
        for name, target in raw.items():
            at = where / name
            if declared is not None and name not in declared:
                self.reporter.unknown(
                    "topology.substitution",
                    at,
                    f"node type {node_type.name} has no attribute '{name}'",  # type: ignore[union-attr]
                    name,
                    declared,
                )
                continue
            if isinstance(target, list) and len(target) == 2:
                self._mapped_member(target, at, "attributes", "attribute")

    def _mapped_member(self, target: list[Any], where: Where, section: str, label: str) -> None:
        node, member = target
        if not isinstance(node, str) or node not in self.index.nodes:
            self.reporter.error(
                "topology.substitution",
                where / 0,
                f"substitution maps to unknown node template '{node}'",
                did_you_mean(str(node), self.index.nodes),
            )
            return
        ntype = self.index.node_type_of(node)
        if ntype is None:
            return
        members = dict(self.registry.members(ntype, section))
        if section == "attributes":
            members.update(self.registry.members(ntype, "properties"))
        if not isinstance(member, str) or (
            member not in members and not (section == "attributes" and member in NODE_RUNTIME)
        ):
            self.reporter.error(
                "topology.substitution",
                where / 1,
                f"node template '{node}' ({ntype.name}) has no {label} '{member}'",
                did_you_mean(str(member), members),
            )
