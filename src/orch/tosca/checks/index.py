"""What a topology template declares, and the questions every check asks of it.

The node, relationship and group templates by name; each node's type, host, interfaces,
operations and artifacts. The section checks and the function checker (get_property, HOST,
get_operation_output, get_artifact) look them up here. Apart because it only answers and never
reports: a check that needs a fact about another template asks the index, not that check.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.types import TypeDef, TypeRegistry, entries, interface_operations
from orch.tosca.values import is_function

_HOSTED_ON = "tosca.relationships.HostedOn"
NODE_RUNTIME = frozenset({"state", "tosca_id", "tosca_name"})  # attributes every node has
UNKNOWN = object()  # a value that is only known at run time


class TopologyIndex:
    """The templates of one topology by name, with the facts derived from them (cached)."""

    def __init__(self, registry: TypeRegistry):
        self.registry = registry
        self.nodes: dict[str, dict[str, Any]] = {}
        self.relationships: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, Any] = {}
        self._node_types: dict[str, TypeDef | None] = {}
        self._hosts: dict[str, bool] = {}

    def load(self, topology: dict[str, Any]) -> None:
        """Take the templates of ``topology`` (entries that are not maps are the grammar's)."""
        nodes = topology.get("node_templates")
        self.nodes = (
            {k: v for k, v in nodes.items() if isinstance(v, dict)}
            if isinstance(nodes, dict)
            else {}
        )
        rels = topology.get("relationship_templates")
        self.relationships = (
            {k: v for k, v in rels.items() if isinstance(v, dict)} if isinstance(rels, dict) else {}
        )
        groups = topology.get("groups")
        self.groups = groups if isinstance(groups, dict) else {}

    # ------------------------------------------------------------------ templates
    def has_template(self, name: str) -> bool:
        return name in self.nodes or name in self.relationships

    def is_node(self, name: str) -> bool:
        return name in self.nodes

    def template_names(self) -> list[str]:
        return [*self.nodes, *self.relationships]

    def node_type_of(self, name: str) -> TypeDef | None:
        if name not in self._node_types:
            body = self.nodes.get(name)
            type_name = body.get("type") if isinstance(body, dict) else None
            self._node_types[name] = self.registry.get("node_types", type_name)
        return self._node_types[name]

    def capability_type_of(self, node_type: TypeDef, capability: str) -> TypeDef | None:
        found = self.registry.members(node_type, "capabilities").get(capability)
        if found is None:
            return None
        definition = found[0]
        type_name = (
            definition
            if isinstance(definition, str)
            else (definition.get("type") if isinstance(definition, dict) else None)
        )
        return self.registry.get("capability_types", type_name)

    # ------------------------------------------------------------------ hosts
    def has_host(self, node: str) -> bool:
        """Whether the node is hosted on another: a HostedOn requirement, declared or assigned."""
        found = self._hosts.get(node)
        if found is None:
            found = self._find_host(node)
            self._hosts[node] = found
        return found

    def _find_host(self, node: str) -> bool:
        node_type = self.node_type_of(node)
        if node_type is None:
            return True  # an unknown type is reported on its own
        for name, (definition, _owner) in self.registry.members(node_type, "requirements").items():
            if self.hosting(name, definition):
                return True
        requirements = (self.nodes.get(node) or {}).get("requirements")
        for item in requirements if isinstance(requirements, list) else ():
            if isinstance(item, dict) and len(item) == 1:
                ((name, body),) = item.items()
                if name == "host" or (
                    isinstance(body, dict) and self._hosted_on(body.get("relationship"))
                ):
                    return True
        return False

    def hosting(self, name: str, definition: Any) -> bool:
        """A requirement for the node's host: named host, or with a HostedOn relationship."""
        if name == "host":
            return True
        return isinstance(definition, dict) and self._hosted_on(definition.get("relationship"))

    def _hosted_on(self, relationship: Any) -> bool:
        if isinstance(relationship, dict):
            relationship = relationship.get("type")
        if not isinstance(relationship, str):
            return False
        template = self.relationships.get(relationship)
        if template is not None:
            relationship = template.get("type")
        reltype = self.registry.get("relationship_types", relationship)
        return self.registry.is_a(reltype, _HOSTED_ON)

    # ------------------------------------------------------------------ members
    def static_value(self, node: str, member: str, section: str) -> Any:
        """A property's (or attribute's) value as written in the blueprint, or UNKNOWN."""
        body = self.nodes.get(node) or {}
        for where in ("attributes", "properties") if section == "attributes" else ("properties",):
            assigned = body.get(where)
            if isinstance(assigned, dict) and member in assigned:
                value = assigned[member]
                if where == "attributes" and type(value) is dict and set(value) == {"value"}:
                    value = value["value"]
                return UNKNOWN if is_function(value) else value
        node_type = self.node_type_of(node)
        if node_type is None:
            return UNKNOWN
        found = self.registry.members(node_type, section).get(member)
        if found is None and section == "attributes":
            found = self.registry.members(node_type, "properties").get(member)
        definition = found[0] if found is not None else None
        if isinstance(definition, dict) and "default" in definition:
            default = definition["default"]
            return UNKNOWN if is_function(default) else default
        return UNKNOWN

    def lenient_capability(self, node: str, capability: str, member: str) -> bool:
        body = self.nodes.get(node) or {}
        caps = body.get("capabilities") if isinstance(body, dict) else None
        assigned = caps.get(capability) if isinstance(caps, dict) else None
        props = assigned.get("properties") if isinstance(assigned, dict) else None
        return isinstance(props, dict) and member in props

    def interfaces_of(self, node: str) -> dict[str, Any]:
        node_type = self.node_type_of(node)
        declared = dict(self.registry.members(node_type, "interfaces")) if node_type else {}
        body = self.nodes.get(node) or {}
        if isinstance(body.get("interfaces"), dict):
            for name in body["interfaces"]:
                declared.setdefault(name, ({}, None))
        return declared

    def operations_of(self, node: str, interface: Any) -> list[str] | None:
        interfaces = self.interfaces_of(node)
        if interface not in interfaces:
            return None
        return sorted(self.operations(interfaces[interface][0], node, interface))

    def operations(self, definition: Any, node: str | None, interface: str) -> set[str]:
        """The operations of an interface: its type's, its definition's and (given a node)
        the template's own."""
        names: set[str] = set()
        type_name = definition.get("type") if isinstance(definition, dict) else None
        itype = self.registry.get("interface_types", type_name) if type_name else None
        if itype is None and interface == "Standard":
            itype = self.registry.get("interface_types", "tosca.interfaces.node.lifecycle.Standard")
        if itype is not None:
            for owner in self.registry.ancestry(itype):
                names.update(_operation_names(owner.body))
        if isinstance(definition, dict):
            names.update(_operation_names(definition))
        if node is not None:
            body = self.nodes.get(node) or {}
            assigned = (
                body.get("interfaces", {}).get(interface)
                if isinstance(body.get("interfaces"), dict)
                else None
            )
            if isinstance(assigned, dict):
                names.update(_operation_names(assigned))
        return names

    def is_artifact(self, node: str, name: str) -> bool:
        """Whether ``name`` is an artifact of the node (its type's or its own)."""
        node_type = self.node_type_of(node)
        if node_type is not None and name in self.registry.members(node_type, "artifacts"):
            return True
        own = (self.nodes.get(node) or {}).get("artifacts")
        return own is not None and any(name == n for n, _ in entries(own))

    def artifacts_of(self, node: str) -> list[str]:
        node_type = self.node_type_of(node)
        names = list(self.registry.members(node_type, "artifacts")) if node_type else []
        body = self.nodes.get(node) or {}
        names.extend(name for name, _ in entries(body.get("artifacts")))
        return names


def _operation_names(body: dict[str, Any]) -> set[str]:
    return set(interface_operations(body))
