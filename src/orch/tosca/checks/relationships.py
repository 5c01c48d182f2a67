"""Relationship templates: the named ones of ``relationship_templates`` and those written inline
in a requirement assignment.

Apart because both places check them the same way (type, properties, interfaces), and the
requirement check needs this one without depending on the node template check.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.assignments import AssignmentChecker
from orch.tosca.checks.interfaces import InterfaceChecker
from orch.tosca.context import Where
from orch.tosca.functions import FunctionContext
from orch.tosca.types import TypeRegistry


class RelationshipChecker:
    """Checks one relationship template against its relationship type."""

    def __init__(
        self,
        registry: TypeRegistry,
        assignments: AssignmentChecker,
        interfaces: InterfaceChecker,
    ):
        self.registry = registry
        self.assignments = assignments
        self.interfaces = interfaces

    def check(
        self, name: str | None, body: dict[str, Any], where: Where, source: str | None
    ) -> None:
        """``name`` is None for an inline template (its required properties may come later);
        ``source`` is the node whose requirement it is, if known."""
        type_name = body.get("type")
        if type_name is None:
            return
        reltype = self.registry.require("relationship_types", type_name, where / "type")
        if reltype is None:
            return
        context = FunctionContext(node=source, relationship=True)
        self.assignments.check(
            body.get("properties"),
            self.registry.members(reltype, "properties"),
            where / "properties",
            context,
            f"relationship type {reltype.name}",
            required=name is not None,
            label="property",
        )
        self.interfaces.interfaces(
            body.get("interfaces"),
            self.registry.members(reltype, "interfaces"),
            where / "interfaces",
            context,
            f"relationship type {reltype.name}",
            None,
        )
