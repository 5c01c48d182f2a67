"""Groups and policies: their types, members and targets, and their properties.

A group's members and a policy's targets name node templates (or groups), of the types the
group type accepts. Apart because both only refer to the node templates by name, from outside.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.assignments import AssignmentChecker
from orch.tosca.checks.index import TopologyIndex
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.functions import FunctionContext
from orch.tosca.types import TypeRegistry


class GroupChecker:
    """Checks the groups and the policies of a topology."""

    def __init__(
        self,
        registry: TypeRegistry,
        index: TopologyIndex,
        assignments: AssignmentChecker,
        reporter: Reporter,
    ):
        self.registry = registry
        self.index = index
        self.assignments = assignments
        self.reporter = reporter

    def group(self, name: str, body: dict[str, Any], where: Where) -> None:
        """A group's type, its members (node templates of the types it accepts), properties."""
        index = self.index
        gtype = (
            self.registry.require("group_types", body.get("type"), where / "type")
            if body.get("type") is not None
            else None
        )
        members = body.get("members")
        if isinstance(members, list):
            allowed = gtype.body.get("members") if gtype is not None else None
            for owner in self.registry.ancestry(gtype) if gtype is not None else ():
                if isinstance(owner.body.get("members"), list):
                    allowed = owner.body["members"]
                    break
            for i, member in enumerate(members):
                if not isinstance(member, str) or (
                    member not in index.nodes and member not in index.groups
                ):
                    self.reporter.error(
                        "topology.unknown-member",
                        where / "members" / i,
                        f"group '{name}' member '{member}' is not a node template",
                        did_you_mean(str(member), index.nodes),
                    )
                elif isinstance(allowed, list) and member in index.nodes:
                    member_type = index.node_type_of(member)
                    if member_type is not None and not any(
                        self.registry.is_a(member_type, a) for a in allowed
                    ):
                        self.reporter.error(
                            "topology.member-type",
                            where / "members" / i,
                            f"member '{member}' ({member_type.name}) is not of a type "
                            f"group type {gtype.name if gtype else '?'} accepts",
                            "accepted: " + ", ".join(map(str, allowed)),
                        )
        if gtype is not None:
            self.assignments.check(
                body.get("properties"),
                self.registry.members(gtype, "properties"),
                where / "properties",
                FunctionContext(),
                f"group type {gtype.name}",
                required=True,
                label="property",
            )

    def policies(self, policies: Any, where: Where) -> None:
        """Each policy's type, its targets (node templates or groups), its properties."""
        index = self.index
        for i, item in enumerate(policies if isinstance(policies, list) else []):
            if not isinstance(item, dict) or len(item) != 1:
                continue
            ((name, body),) = item.items()
            if not isinstance(body, dict):
                continue
            at = where / i / name
            ptype = (
                self.registry.require("policy_types", body.get("type"), at / "type")
                if body.get("type") is not None
                else None
            )
            targets = body.get("targets")
            if isinstance(targets, list):
                for j, target in enumerate(targets):
                    if not isinstance(target, str) or (
                        target not in index.nodes and target not in index.groups
                    ):
                        self.reporter.error(
                            "topology.unknown-target",
                            at / "targets" / j,
                            f"policy '{name}' target '{target}' is not a node template or group",
                            did_you_mean(str(target), [*index.nodes, *index.groups]),
                        )
            if ptype is not None:
                self.assignments.check(
                    body.get("properties"),
                    self.registry.members(ptype, "properties"),
                    at / "properties",
                    FunctionContext(),
                    f"policy type {ptype.name}",
                    required=True,
                    label="property",
                )
