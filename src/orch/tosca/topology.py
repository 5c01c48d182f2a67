"""Checks of a topology template against the types: node and relationship templates,
requirements, groups, policies, substitution mappings, workflows, inputs and outputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.definitions import DefinitionChecker
from orch.tosca.diagnostics import Severity, did_you_mean
from orch.tosca.functions import UNKNOWN, FunctionChecker, FunctionContext
from orch.tosca.imports import OUTSIDE_HINT, Confinement, zip_member_exists
from orch.tosca.states import BUILTIN_ARTIFACTS, JOB_STATES, NODE_STATES
from orch.tosca.types import TypeDef, TypeRegistry, entries, interface_operations
from orch.tosca.values import NOT_COMPILED as _NOT_COMPILED
from orch.tosca.values import UNBOUNDED, ValueChecker, is_function

STANDARD_OPERATIONS = ("create", "configure", "start", "stop", "delete")
_HOSTED_ON = "tosca.relationships.HostedOn"
NODE_RUNTIME = frozenset({"state", "tosca_id", "tosca_name"})  # attributes every node has


class TopologyChecker:
    confinement: Confinement | None = None
    """Where artifacts may be (the validator sets it): one outside is an error, never read."""

    def __init__(
        self,
        registry: TypeRegistry,
        values: ValueChecker,
        functions: FunctionChecker,
        definitions: DefinitionChecker,
        reporter: Reporter,
        *,
        lenient: bool = False,
    ):
        self.registry = registry
        self.values = values
        self.functions = functions
        self.definitions = definitions
        self.reporter = reporter
        self.lenient = lenient  # the Alien4Cloud dialect: abstract nodes filled in later
        self.nodes: dict[str, dict[str, Any]] = {}
        self.relationships: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, Any] = {}
        self._node_types: dict[str, TypeDef | None] = {}
        self._existing: dict[tuple[str, str], tuple[Any, str]] = {}
        self._hosts: dict[str, bool] = {}
        self._needed: dict[TypeDef, list[tuple[str, int, Any]]] = {}
        self._required_cache: dict[int, tuple[Any, list[str]]] = {}
        self._known: dict[tuple[int, str], tuple[Any, set[str]]] = {}
        self._candidates: dict[tuple[str, str | None], list[str]] = {}
        self._mapped_requirements: set[tuple[Any, Any]] = set()
        functions.topology = self
        values.check_function = functions.check  # no detour through the validator's closure
        values.function_clean = functions.known_clean

    # ------------------------------------------------------------------ queries (functions)
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
            if self._hosting(name, definition):
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
        return sorted(self._operations(interfaces[interface][0], node, interface))

    def _operations(self, definition: Any, node: str | None, interface: str) -> set[str]:
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

    def _is_artifact(self, node: str, name: str) -> bool:
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

    # ------------------------------------------------------------------ the check
    def check(self, topology: dict[str, Any], where: Where) -> None:
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
        self._mapped_requirements = _mapped_requirements(topology.get("substitution_mappings"))
        inputs = topology.get("inputs")
        self.functions.inputs = inputs if isinstance(inputs, dict) else {}
        if isinstance(inputs, dict):
            for name, definition in inputs.items():
                self.definitions.parameter_definition(definition, where / "inputs" / name)
        guard = self.reporter.guard
        self._node_templates(list(self.nodes), where)
        for name, body in self.relationships.items():
            at = where / "relationship_templates" / name
            guard(
                at,
                f"relationship template '{name}'",
                lambda n=name, b=body, a=at: self._relationship_template(n, b, a, None),
            )
        guard(
            where / "node_templates",
            "requirement cycles",
            lambda: self._requirement_cycles(where / "node_templates"),
        )
        for name, body in self.groups.items():
            if isinstance(body, dict):
                at = where / "groups" / name
                guard(at, f"group '{name}'", lambda n=name, b=body, a=at: self._group(n, b, a))
        guard(
            where / "policies",
            "policies",
            lambda: self._policies(topology.get("policies"), where / "policies"),
        )
        outputs = topology.get("outputs")
        if isinstance(outputs, dict):
            for name, definition in outputs.items():
                at = where / "outputs" / name
                guard(at, f"output '{name}'", lambda d=definition, a=at: self._output(d, a))
        if isinstance(topology.get("substitution_mappings"), dict):
            at = where / "substitution_mappings"
            guard(
                at,
                "substitution_mappings",
                lambda: self._substitution(topology["substitution_mappings"], at),
            )
        workflows = topology.get("workflows")
        if isinstance(workflows, dict):
            for name, workflow in workflows.items():
                if isinstance(workflow, dict):
                    at = where / "workflows" / name
                    guard(
                        at,
                        f"workflow '{name}'",
                        lambda n=name, w=workflow, a=at: self._workflow(n, w, a, workflows),
                    )

    # ------------------------------------------------------------------ node templates
    def _node_templates(self, names: list[str], where: Where) -> None:
        guard = self.reporter.guard
        base = where / "node_templates"
        for name in names:
            at = base / name
            guard(
                at,
                f"node template '{name}'",
                lambda n=name, b=self.nodes[name], a=at: self._node_template(n, b, a),
            )

    def _node_template(self, name: str, body: dict[str, Any], where: Where) -> None:
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
        abstract = "directives" in body and bool(
            {"substitute", "select"} & _names(body.get("directives"))
        )
        self._assignments(
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
            self._assignments(
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
            self._requirements(name, requirements, node_type, where / "requirements")
            if isinstance(requirements, list)
            else {}
        )
        if not abstract:
            self._missing_requirements(name, body, node_type, counts, where)
        if body.get("interfaces") is not None:
            self._interfaces(
                body["interfaces"],
                members(node_type, "interfaces"),
                where / "interfaces",
                context,
                owner,
                name,
            )
        if body.get("artifacts") is not None:
            self._artifacts(body["artifacts"], where / "artifacts")
        if "node_filter" in body:
            self._node_filter(body["node_filter"], where / "node_filter", node_type)

    def _assignments(
        self,
        values: Any,
        declared: dict[str, tuple[Any, TypeDef]],
        where: Where,
        context: FunctionContext,
        owner: str,
        *,
        required: bool,
        label: str,
        abstract: bool = False,
    ) -> None:
        if values is None:
            values = {}
        if not isinstance(values, dict):
            return  # grammar reports the shape
        section = "properties" if label == "property" else "attributes"
        schema_for = self.values.schema_for
        known_clean = self.values.known_clean
        for prop, value in values.items():
            extended = (
                label == "attribute"
                and type(value) is dict
                and "value" in value
                and set(value) <= {"value", "description"}
            )
            if extended:
                value = value["value"]  # TOSCA 1.3 extended attribute assignment
            found = declared.get(prop)
            if found is None:
                if label == "attribute":
                    self.functions.check_value(value, where / prop, context)
                    continue
                self.reporter.error(
                    f"topology.unknown-{label}",
                    where / prop,
                    f"unknown {label} '{prop}' for {owner}",
                    did_you_mean(str(prop), declared) or f"{owner} declares no {label}",
                    key=True,
                )
                continue
            schema = schema_for(found[0], found[1], section, prop)
            if schema is not None:
                if known_clean(value, schema, context):
                    continue  # the commonest assignments: nothing (new) to find
                where_value = where / prop / "value" if extended else where / prop
                self.values.check(value, schema, where_value, context)
            elif type(value) in (dict, list):
                self.functions.check_value(value, where / prop, context)
        if not required or abstract or self.lenient:
            return
        for prop in self._required(declared):
            if prop not in values:
                self.reporter.error(
                    f"topology.missing-{label}",
                    where,
                    f"missing required {label} '{prop}' of {owner}",
                    "set it here, or give it a default in the type",
                )

    def _required(self, declared: dict[str, tuple[Any, TypeDef]]) -> list[str]:
        """The required members without a default or value (cached per declaration)."""
        found = self._required_cache.get(id(declared))
        if found is None or found[0] is not declared:
            names = [
                prop
                for prop, (definition, _owner) in declared.items()
                if isinstance(definition, dict)
                and definition.get("required", True) is True
                and "default" not in definition
                and "value" not in definition
            ]
            found = (declared, names)  # holding the dict keeps its id unique
            self._required_cache[id(declared)] = found
        return found[1]

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
            captype = self.capability_type_of(node_type, cap_name)
            if captype is None or not isinstance(body, dict):
                continue
            definition = declared[cap_name][0]
            cap_props = dict(self.registry.members(captype, "properties"))
            if isinstance(definition, dict) and isinstance(definition.get("properties"), dict):
                for prop, prop_def in definition["properties"].items():
                    if isinstance(prop_def, dict) and "type" in prop_def:
                        cap_props[prop] = (prop_def, declared[cap_name][1])
            self._assignments(
                body.get("properties"),
                cap_props,
                where / cap_name / "properties",
                context,
                f"capability type {captype.name}",
                required=False,
                label="property",
            )
            self._assignments(
                body.get("attributes"),
                self.registry.members(captype, "attributes"),
                where / cap_name / "attributes",
                context,
                f"capability type {captype.name}",
                required=False,
                label="attribute",
            )

    def _requirements(
        self, node: str, assigned: Any, node_type: TypeDef, where: Where
    ) -> dict[str, int]:
        """Check each assignment; return how often each declared requirement is assigned."""
        counts: dict[str, int] = {}
        if not isinstance(assigned, list):
            return counts
        declared = self.registry.members(node_type, "requirements")
        for i, item in enumerate(assigned):
            if not isinstance(item, dict) or len(item) != 1:
                continue
            ((req_name, body),) = item.items()
            at = where / i / req_name
            if isinstance(body, dict) and isinstance(body.get("type_requirement"), str):
                req_name = body["type_requirement"]  # Alien4Cloud names each assignment apart
            found = declared.get(req_name)
            if found is None:
                self.reporter.unknown(
                    "topology.unknown-requirement",
                    at,
                    f"unknown requirement '{req_name}' for node type {node_type.name}",
                    req_name,
                    declared,
                )
                continue
            counts[req_name] = counts.get(req_name, 0) + 1
            self._requirement(node, req_name, body, found[0], at)
        for req_name, count in counts.items():
            definition = declared[req_name][0]
            occurrences = definition.get("occurrences") if isinstance(definition, dict) else None
            # Without explicit occurrences the spec implies [1, 1], but its own tutorials (and
            # Puccini) assign such requirements several times: only explicit bounds are enforced.
            if isinstance(occurrences, list) and len(occurrences) == 2:
                upper = occurrences[1]
                if upper != UNBOUNDED and isinstance(upper, int) and count > upper:
                    self.reporter.error(
                        "topology.occurrences",
                        where,
                        f"requirement '{req_name}' is assigned {count} times; "
                        f"node type {node_type.name} allows at most {upper}",
                    )
        return counts

    def _missing_requirements(
        self,
        node: str,
        body: dict[str, Any],
        node_type: TypeDef,
        counts: dict[str, int],
        where: Where,
    ) -> None:
        """A requirement below its lower bound that nothing in the topology can fulfil.

        TOSCA's default occurrences are [1, 1]. Processors fill an unassigned requirement with
        a node template that offers the capability (Puccini, the spec's own tutorials rely on
        it), and a requirement mapped by substitution_mappings is the outer topology's to
        fulfil; what is left can never be satisfied. orch fills an unassigned host (a HostedOn
        requirement) itself: the node runs on the machine orch runs on. Alien4Cloud reports a
        missing requirement as a task of the topology, not as a parse error: a warning there.
        """
        needed = self._needed.get(node_type)
        if needed is None:
            needed = [
                (req_name, _lower_bound(definition), definition)
                for req_name, (definition, _owner) in self.registry.members(
                    node_type, "requirements"
                ).items()
                if not self._hosting(req_name, definition)
            ]
            needed = [entry for entry in needed if entry[1] > 0]
            self._needed[node_type] = needed
        for req_name, lower, definition in needed:
            count = counts.get(req_name, 0)
            if count >= lower or (node, req_name) in self._mapped_requirements:
                continue
            capability, wanted = self._fulfilment(definition)
            if capability is None or self._candidate(node, capability, wanted):
                continue
            requirements = body.get("requirements")
            at = where / "requirements" if isinstance(requirements, list) else where
            offer = f"a node template of type {wanted.name} " if wanted is not None else ""
            message = (
                f"node template '{node}' leaves required requirement '{req_name}' of "
                f"{node_type.name} unassigned"
                if count == 0
                else f"requirement '{req_name}' of node template '{node}' is assigned {count} "
                f"time(s); node type {node_type.name} needs at least {lower}"
            )
            self.reporter.report(
                "topology.missing-requirement",
                at,
                f"{message}, and nothing in the topology can fulfil it",
                f"assign it (- {req_name}: <node template>), or add {offer or 'a node template '}"
                f"with a {capability} capability; occurrences [0, N] make it optional",
                key=True,
                severity=Severity.WARNING if self.lenient else Severity.ERROR,
            )

    def _hosting(self, name: str, definition: Any) -> bool:
        """A requirement for the node's host: named host, or with a HostedOn relationship."""
        if name == "host":
            return True
        return isinstance(definition, dict) and self._hosted_on(definition.get("relationship"))

    def _fulfilment(self, definition: Any) -> tuple[str | None, TypeDef | None]:
        """The capability (type or name) a requirement wants, and the node type, if named."""
        if isinstance(definition, str):
            return definition, None
        if not isinstance(definition, dict):
            return None, None
        capability = definition.get("capability")
        node = definition.get("node")
        wanted = self.registry.get("node_types", node) if isinstance(node, str) else None
        if isinstance(node, str) and wanted is None:
            return None, None  # an unknown node type is reported with the type
        return (capability if isinstance(capability, str) else None), wanted

    def _candidate(self, node: str, capability: str, wanted: TypeDef | None) -> bool:
        """Whether a node template other than ``node`` offers the capability."""
        key = (capability, wanted.name if wanted is not None else None)
        found = self._candidates.get(key)
        if found is None:
            found = self._find_candidates(capability, wanted)
            self._candidates[key] = found
        return any(name != node for name in found)

    def _find_candidates(self, capability: str, wanted: TypeDef | None) -> list[str]:
        captype = self.registry.get("capability_types", capability)
        found: list[str] = []
        for name in self.nodes:
            node_type = self.node_type_of(name)
            if node_type is None:
                found.append(name)  # unknown: reported elsewhere, assume it fits
                continue
            if wanted is not None and not self.registry.is_a(node_type, wanted):
                continue
            capabilities = self.registry.members(node_type, "capabilities")
            if (
                capability in capabilities
                or captype is None
                or any(
                    self.registry.is_a(self.capability_type_of(node_type, cap), captype)
                    for cap in capabilities
                )
            ):
                found.append(name)
                if len(found) == 2:
                    break
        return found

    def _requirement(
        self, node: str, req_name: str, body: Any, definition: Any, where: Where
    ) -> None:
        target = (
            body
            if isinstance(body, str)
            else (body.get("node") if isinstance(body, dict) else None)
        )
        capability = body.get("capability") if isinstance(body, dict) else None
        wanted_cap = capability
        if wanted_cap is None:
            wanted_cap = (
                definition
                if isinstance(definition, str)
                else (definition.get("capability") if isinstance(definition, dict) else None)
            )
        target_type: TypeDef | None = None
        node_where = where if isinstance(body, str) else where / "node"
        if isinstance(target, str):
            if target in self.nodes:
                target_type = self.node_type_of(target)
                if target == node:
                    self.reporter.error(
                        "topology.self-requirement",
                        node_where,
                        f"requirement '{req_name}' of '{node}' targets itself",
                    )
            elif self.registry.get("node_types", target) is not None:
                target_type = None  # abstract: a node of that type is selected at deploy time
            else:
                self.reporter.error(
                    "topology.unknown-node",
                    node_where,
                    f"requirement '{req_name}' targets unknown node template '{target}'",
                    did_you_mean(target, self.nodes) or "no node template has that name",
                )
                return
        if target_type is not None and wanted_cap is not None:
            self._target_fits(target, target_type, wanted_cap, definition, req_name, where, body)
        if isinstance(body, dict):
            relationship = body.get("relationship")
            if isinstance(relationship, str):
                if relationship not in self.relationships:
                    self.registry.require(
                        "relationship_types", relationship, where / "relationship"
                    )
            elif isinstance(relationship, dict):
                self._relationship_template(None, relationship, where / "relationship", node)
            if "node_filter" in body:
                self._node_filter(body["node_filter"], where / "node_filter", None)

    def _target_fits(
        self,
        target: str,
        target_type: TypeDef,
        wanted: Any,
        definition: Any,
        req_name: str,
        where: Where,
        body: Any,
    ) -> None:
        caps = self.registry.members(target_type, "capabilities")
        if not isinstance(wanted, str) or wanted in caps:
            return  # a capability named on the target
        wanted_type = self.registry.get("capability_types", wanted)
        if wanted_type is None:
            if isinstance(body, dict) and body.get("capability") is not None:
                self.reporter.error(
                    "topology.unknown-capability",
                    where / "capability",
                    f"'{wanted}' is neither a capability of {target} nor a capability type",
                    did_you_mean(str(wanted), caps),
                )
            return
        for cap_name in caps:
            captype = self.capability_type_of(target_type, cap_name)
            if captype is not None and (
                self.registry.is_a(captype, wanted_type) or self.registry.is_a(wanted_type, captype)
            ):
                return
        at = where if isinstance(body, str) else where / "node"
        self.reporter.error(
            "topology.capability-mismatch",
            at,
            f"requirement '{req_name}' needs a {wanted_type.name} capability, which node "
            f"'{target}' ({target_type.name}) does not offer",
            ("its capabilities: " + ", ".join(sorted(caps))) if caps else None,
        )

    def _requirement_cycles(self, where: Where) -> None:
        graph: dict[str, list[str]] = {}
        for name, body in self.nodes.items():
            targets = []
            reqs = body.get("requirements")
            if isinstance(reqs, list):
                for item in reqs:
                    if isinstance(item, dict) and len(item) == 1:
                        ((_req, value),) = item.items()
                        target = (
                            value
                            if isinstance(value, str)
                            else (value.get("node") if isinstance(value, dict) else None)
                        )
                        if isinstance(target, str) and target in self.nodes and target != name:
                            targets.append(target)
            graph[name] = targets
        state: dict[str, int] = {}
        reported: set[frozenset[str]] = set()
        for start in graph:
            if state.get(start):
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            trail: list[str] = []
            while stack:
                node, index = stack.pop()
                if index == 0:
                    state[node] = 1
                    trail.append(node)
                children = graph[node]
                if index < len(children):
                    stack.append((node, index + 1))
                    child = children[index]
                    if state.get(child) == 1:
                        cycle = [*trail[trail.index(child) :], child]
                        key = frozenset(cycle)
                        if key not in reported:
                            reported.add(key)
                            self.reporter.error(
                                "topology.requirement-cycle",
                                where / child,
                                "requirement cycle: " + " -> ".join(cycle),
                                "orch cannot order these nodes; break the cycle",
                                key=True,
                            )
                    elif not state.get(child):
                        stack.append((child, 0))
                else:
                    state[node] = 2
                    trail.pop()

    def _relationship_template(
        self, name: str | None, body: dict[str, Any], where: Where, source: str | None
    ) -> None:
        type_name = body.get("type")
        if type_name is None:
            return
        reltype = self.registry.require("relationship_types", type_name, where / "type")
        if reltype is None:
            return
        context = FunctionContext(node=source, relationship=True)
        self._assignments(
            body.get("properties"),
            self.registry.members(reltype, "properties"),
            where / "properties",
            context,
            f"relationship type {reltype.name}",
            required=name is not None,
            label="property",
        )
        self._interfaces(
            body.get("interfaces"),
            self.registry.members(reltype, "interfaces"),
            where / "interfaces",
            context,
            f"relationship type {reltype.name}",
            None,
        )

    # ------------------------------------------------------------------ interfaces
    def _interfaces(
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
            found = declared.get(iname)
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
            definition = found[0]
            known = self._known_operations(definition, iname)
            operations = interface_operations(body)
            op_base = where / iname / "operations" if "operations" in body else where / iname
            shared = _input_definitions(definition)
            inputs = body.get("inputs")
            if isinstance(inputs, dict):
                self._inputs(inputs, (shared,), where / iname, context, "inputs")
            declared_ops = interface_operations(definition) if isinstance(definition, dict) else {}
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
                own = _input_definitions(declared_ops.get(op_name))
                self._operation(op, op_base / op_name, context, node, (own, shared))

    def _known_operations(self, definition: Any, interface: str) -> set[str]:
        """The operations an interface definition allows (cached: node types repeat)."""
        key = (id(definition), interface)
        found = self._known.get(key)
        if found is None:
            found = (definition, self._operations(definition, None, interface))
            self._known[key] = found
        return found[1]

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
        if node is not None and self._is_artifact(node, file):
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

    def _artifacts(self, artifacts: Any, where: Where) -> None:
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

    def _node_filter(self, node_filter: Any, where: Where, node_type: TypeDef | None) -> None:
        if not isinstance(node_filter, dict):
            return
        for cap in entries(node_filter.get("capabilities")):
            name = cap[0]
            if (
                node_type is not None
                and name not in self.registry.members(node_type, "capabilities")
                and self.registry.get("capability_types", name) is None
            ):
                self.reporter.error(
                    "topology.unknown-capability",
                    where / "capabilities",
                    f"node_filter names unknown capability '{name}'",
                )

    # ------------------------------------------------------------------ groups, policies
    def _group(self, name: str, body: dict[str, Any], where: Where) -> None:
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
                    member not in self.nodes and member not in self.groups
                ):
                    self.reporter.error(
                        "topology.unknown-member",
                        where / "members" / i,
                        f"group '{name}' member '{member}' is not a node template",
                        did_you_mean(str(member), self.nodes),
                    )
                elif isinstance(allowed, list) and member in self.nodes:
                    member_type = self.node_type_of(member)
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
            self._assignments(
                body.get("properties"),
                self.registry.members(gtype, "properties"),
                where / "properties",
                FunctionContext(),
                f"group type {gtype.name}",
                required=True,
                label="property",
            )

    def _policies(self, policies: Any, where: Where) -> None:
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
                        target not in self.nodes and target not in self.groups
                    ):
                        self.reporter.error(
                            "topology.unknown-target",
                            at / "targets" / j,
                            f"policy '{name}' target '{target}' is not a node template or group",
                            did_you_mean(str(target), [*self.nodes, *self.groups]),
                        )
            if ptype is not None:
                self._assignments(
                    body.get("properties"),
                    self.registry.members(ptype, "properties"),
                    at / "properties",
                    FunctionContext(),
                    f"policy type {ptype.name}",
                    required=True,
                    label="property",
                )

    # ------------------------------------------------------------------ outputs, substitution
    def _output(self, definition: Any, where: Where) -> None:
        if not isinstance(definition, dict):
            return
        context = FunctionContext(in_outputs=True)
        value = definition.get("value")
        if "type" in definition:
            self.definitions.parameter_definition(
                {k: v for k, v in definition.items() if k != "value"}, where
            )
            schema = (
                self.values.schema_of(definition["type"], where)
                if self.values.resolves(definition["type"])
                else None
            )
            if schema is not None and value is not None:
                self.values.check(value, schema, where / "value", context)
                return
        if value is not None:
            if is_function(value):
                self.functions.check(value, where / "value", context)
            else:
                self.functions.check_value(value, where / "value", context)

    def _substitution(self, mapping: dict[str, Any], where: Where) -> None:
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
                    if not isinstance(node, str) or node not in self.nodes:
                        self.reporter.error(
                            "topology.substitution",
                            where / section / name / 0,
                            f"substitution maps to unknown node template '{node}'",
                            did_you_mean(str(node), self.nodes),
                        )
                        continue
                    ntype = self.node_type_of(node)
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
        if not isinstance(node, str) or node not in self.nodes:
            self.reporter.error(
                "topology.substitution",
                where / 0,
                f"substitution maps to unknown node template '{node}'",
                did_you_mean(str(node), self.nodes),
            )
            return
        ntype = self.node_type_of(node)
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

    # ------------------------------------------------------------------ workflows
    def _workflow(
        self, name: str, workflow: dict[str, Any], where: Where, workflows: dict[str, Any]
    ) -> None:
        steps = workflow.get("steps")
        if not isinstance(steps, dict):
            return
        for step_name, step in steps.items():
            if not isinstance(step, dict):
                continue
            at = where / "steps" / step_name
            target = step.get("target")
            if (
                isinstance(target, str)
                and target not in self.nodes
                and target not in self.groups
                and target not in self.relationships
            ):
                self.reporter.error(
                    "workflow.unknown-target",
                    at / "target",
                    f"step '{step_name}' targets unknown node or group '{target}'",
                    did_you_mean(target, [*self.nodes, *self.groups]),
                )
                target = None
            for key in ("on_success", "on_failure", "precedingSteps", "onSuccess", "onFailure"):
                refs = step.get(key)
                refs = [refs] if isinstance(refs, str) else refs
                if isinstance(refs, list):
                    for i, ref in enumerate(refs):
                        if not isinstance(ref, str) or ref not in steps:
                            self.reporter.error(
                                "workflow.unknown-step",
                                at / key / i if isinstance(step.get(key), list) else at / key,
                                f"step '{step_name}' {key} refers to unknown step '{ref}'",
                                did_you_mean(str(ref), steps),
                            )
            if step.get("target_relationship") is not None:
                target = None  # operations of a relationship, not of the node
            activities = step.get("activities")
            if isinstance(activities, list):
                for i, activity in enumerate(activities):
                    self._activity(activity, at / "activities" / i, target, workflows)
            elif isinstance(step.get("activity"), dict):
                self._activity(step["activity"], at / "activity", target, workflows)

    def _activity(
        self, activity: Any, where: Where, target: str | None, workflows: dict[str, Any]
    ) -> None:
        if not isinstance(activity, dict) or len(activity) != 1:
            return
        ((kind, value),) = activity.items()
        if kind == "set_state":
            if value not in NODE_STATES and value not in JOB_STATES:
                self.reporter.warning(
                    "workflow.state",
                    where / kind,
                    f"'{value}' is not a normative node state nor a job state",
                    "normative: " + ", ".join(NODE_STATES) + "; jobs: " + ", ".join(JOB_STATES),
                )
        elif kind == "call_operation":
            op = value.get("operation") if isinstance(value, dict) else value
            if isinstance(op, str) and isinstance(target, str) and target in self.nodes:
                interface, _, operation = op.rpartition(".")
                operations = self.operations_of(target, interface)
                if operations is None:
                    self.reporter.error(
                        "workflow.unknown-operation",
                        where / kind,
                        f"node '{target}' has no interface '{interface}'",
                        did_you_mean(interface, self.interfaces_of(target)),
                    )
                elif operation not in operations:
                    self.reporter.error(
                        "workflow.unknown-operation",
                        where / kind,
                        f"interface '{interface}' of '{target}' has no operation '{operation}'",
                        did_you_mean(operation, operations),
                    )
        elif kind in ("delegate", "inline"):
            name = value.get("workflow") if isinstance(value, dict) else value
            if kind == "inline" and isinstance(name, str) and name not in workflows:
                self.reporter.error(
                    "workflow.unknown",
                    where / kind,
                    f"inline refers to unknown workflow '{name}'",
                    did_you_mean(name, workflows),
                )


_UNSEEN = (None, "")  # not looked for yet


def _input_definitions(definition: Any) -> dict[str, Any]:
    """The ``inputs`` of an interface or operation definition (a map, or nothing)."""
    inputs = definition.get("inputs") if isinstance(definition, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _lower_bound(definition: Any) -> int:
    """A requirement's minimum occurrences: [1, 1] by default (TOSCA 1.3, 3.6.3)."""
    occurrences = definition.get("occurrences") if isinstance(definition, dict) else None
    if occurrences is None:
        return 1
    if isinstance(occurrences, list) and occurrences and type(occurrences[0]) is int:
        return occurrences[0]
    return 0  # malformed: reported with the type


def _mapped_requirements(mapping: Any) -> set[tuple[Any, Any]]:
    """(node template, requirement) pairs a substitution mapping leaves to the outer topology."""
    requirements = mapping.get("requirements") if isinstance(mapping, dict) else None
    pairs: set[tuple[Any, Any]] = set()
    if isinstance(requirements, dict):
        for target in requirements.values():
            if (
                isinstance(target, list)
                and len(target) >= 2
                and isinstance(target[0], str)
                and isinstance(target[1], str)
            ):
                pairs.add((target[0], target[1]))
    return pairs


def _names(value: Any) -> set[str]:
    """The strings of a list (directives, ...); anything else has none."""
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def _operation_names(body: dict[str, Any]) -> set[str]:
    return set(interface_operations(body))
