"""Requirements: assignments and their targets, occurrences, the ones left unassigned, cycles.

A requirement names a node template (or a node type) whose capabilities must fit; it may be
assigned at most as often as its type allows and at least as often unless something in the
topology can fulfil it; requirements must not form a cycle. Node filters select requirement
targets, so they are checked here too. Apart because it is about the links between templates:
it looks at the whole topology (through the index), not at one template's own values.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.index import TopologyIndex
from orch.tosca.checks.relationships import RelationshipChecker
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import Severity, did_you_mean
from orch.tosca.types import TypeDef, TypeRegistry, entries
from orch.tosca.values import UNBOUNDED


class RequirementChecker:
    """Requirement assignments of node templates, and the requirement graph."""

    def __init__(
        self,
        registry: TypeRegistry,
        index: TopologyIndex,
        relationships: RelationshipChecker,
        reporter: Reporter,
        *,
        lenient: bool = False,
    ):
        self.registry = registry
        self.index = index
        self.relationships = relationships
        self.reporter = reporter
        self.lenient = lenient  # the Alien4Cloud dialect: a missing requirement is a warning
        self.mapped: set[tuple[Any, Any]] = set()
        """(node template, requirement) pairs substitution_mappings leave to the outer topology."""
        self._needed: dict[TypeDef, list[tuple[str, int, Any]]] = {}
        self._candidates: dict[tuple[str, str | None], list[str]] = {}

    def check(self, node: str, assigned: Any, node_type: TypeDef, where: Where) -> dict[str, int]:
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

    def missing(
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
                if not self.index.hosting(req_name, definition)
            ]
            needed = [entry for entry in needed if entry[1] > 0]
            self._needed[node_type] = needed
        for req_name, lower, definition in needed:
            count = counts.get(req_name, 0)
            if count >= lower or (node, req_name) in self.mapped:
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
        index = self.index
        captype = self.registry.get("capability_types", capability)
        found: list[str] = []
        for name in index.nodes:
            node_type = index.node_type_of(name)
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
                    self.registry.is_a(index.capability_type_of(node_type, cap), captype)
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
        index = self.index
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
            if target in index.nodes:
                target_type = index.node_type_of(target)
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
                    did_you_mean(target, index.nodes) or "no node template has that name",
                )
                return
        if target_type is not None and wanted_cap is not None:
            self._target_fits(target, target_type, wanted_cap, definition, req_name, where, body)
        if isinstance(body, dict):
            relationship = body.get("relationship")
            if isinstance(relationship, str):
                if relationship not in index.relationships:
                    self.registry.require(
                        "relationship_types", relationship, where / "relationship"
                    )
            elif isinstance(relationship, dict):
                self.relationships.check(None, relationship, where / "relationship", node)
            if "node_filter" in body:
                self.node_filter(body["node_filter"], where / "node_filter", None)

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
            captype = self.index.capability_type_of(target_type, cap_name)
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

    def node_filter(self, node_filter: Any, where: Where, node_type: TypeDef | None) -> None:
        """The capabilities a node filter names exist (on ``node_type``, or as types)."""
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

    def cycles(self, where: Where) -> None:
        """Requirements between node templates that form a cycle (one finding per cycle)."""
        nodes = self.index.nodes
        graph: dict[str, list[str]] = {}
        for name, body in nodes.items():
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
                        if isinstance(target, str) and target in nodes and target != name:
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


def mapped_requirements(mapping: Any) -> set[tuple[Any, Any]]:
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


def _lower_bound(definition: Any) -> int:
    """A requirement's minimum occurrences: [1, 1] by default (TOSCA 1.3, 3.6.3)."""
    occurrences = definition.get("occurrences") if isinstance(definition, dict) else None
    if occurrences is None:
        return 1
    if isinstance(occurrences, list) and occurrences and type(occurrences[0]) is int:
        return occurrences[0]
    return 0  # malformed: reported with the type
