"""Checks of a topology template against the types: node and relationship templates,
requirements, groups, policies, substitution mappings, workflows, inputs and outputs.

``TopologyChecker`` wires the section checks of ``orch.tosca.checks`` together and runs them in
the order their findings are reported; each section is checked in its own module.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.assignments import AssignmentChecker
from orch.tosca.checks.groups import GroupChecker
from orch.tosca.checks.index import NODE_RUNTIME, TopologyIndex
from orch.tosca.checks.interfaces import InterfaceChecker
from orch.tosca.checks.nodes import NodeTemplateChecker
from orch.tosca.checks.outputs import OutputChecker
from orch.tosca.checks.relationships import RelationshipChecker
from orch.tosca.checks.requirements import RequirementChecker, mapped_requirements
from orch.tosca.checks.substitution import SubstitutionChecker
from orch.tosca.checks.workflows import WorkflowChecker
from orch.tosca.context import Reporter, Where
from orch.tosca.definitions import DefinitionChecker
from orch.tosca.functions import FunctionChecker
from orch.tosca.imports import Confinement
from orch.tosca.types import TypeRegistry
from orch.tosca.values import ValueChecker

__all__ = ["NODE_RUNTIME", "STANDARD_OPERATIONS", "TopologyChecker"]

STANDARD_OPERATIONS = ("create", "configure", "start", "stop", "delete")


class TopologyChecker:
    """The whole check of one topology template: its inputs, then each section in turn."""

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
        self.index = index = TopologyIndex(registry)
        assignments = AssignmentChecker(values, functions, reporter, lenient=lenient)
        self._interfaces = interfaces = InterfaceChecker(
            registry, index, values, functions, reporter
        )
        self._relationships = relationships = RelationshipChecker(registry, assignments, interfaces)
        self._requirements = requirements = RequirementChecker(
            registry, index, relationships, reporter, lenient=lenient
        )
        self._nodes = NodeTemplateChecker(
            registry, index, assignments, requirements, interfaces, reporter
        )
        self._groups = GroupChecker(registry, index, assignments, reporter)
        self._outputs = OutputChecker(values, functions, definitions)
        self._substitution = SubstitutionChecker(registry, index, values, functions, reporter)
        self._workflows = WorkflowChecker(index, reporter)
        functions.attach(index, values)
        values.check_function = functions.check  # no detour through the validator's closure
        values.function_clean = functions.known_clean

    @property
    def confinement(self) -> Confinement | None:
        """Where artifacts may be (the validator sets it): one outside is an error, never read."""
        return self._interfaces.confinement

    @confinement.setter
    def confinement(self, confinement: Confinement | None) -> None:
        self._interfaces.confinement = confinement

    def check(self, topology: dict[str, Any], where: Where) -> None:
        index = self.index
        index.load(topology)
        self._requirements.mapped = mapped_requirements(topology.get("substitution_mappings"))
        inputs = topology.get("inputs")
        self.functions.inputs = inputs if isinstance(inputs, dict) else {}
        if isinstance(inputs, dict):
            for name, definition in inputs.items():
                self.definitions.parameter_definition(definition, where / "inputs" / name)
        guard = self.reporter.guard
        self._node_templates(list(index.nodes), where)
        relationship = self._relationships.check
        for name, body in index.relationships.items():
            at = where / "relationship_templates" / name
            guard(
                at,
                f"relationship template '{name}'",
                lambda n=name, b=body, a=at: relationship(n, b, a, None),
            )
        guard(
            where / "node_templates",
            "requirement cycles",
            lambda: self._requirements.cycles(where / "node_templates"),
        )
        group = self._groups.group
        for name, body in index.groups.items():
            if isinstance(body, dict):
                at = where / "groups" / name
                guard(at, f"group '{name}'", lambda n=name, b=body, a=at: group(n, b, a))
        guard(
            where / "policies",
            "policies",
            lambda: self._groups.policies(topology.get("policies"), where / "policies"),
        )
        outputs = topology.get("outputs")
        if isinstance(outputs, dict):
            output = self._outputs.check
            for name, definition in outputs.items():
                at = where / "outputs" / name
                guard(at, f"output '{name}'", lambda d=definition, a=at: output(d, a))
        if isinstance(topology.get("substitution_mappings"), dict):
            at = where / "substitution_mappings"
            guard(
                at,
                "substitution_mappings",
                lambda: self._substitution.check(topology["substitution_mappings"], at),
            )
        workflows = topology.get("workflows")
        if isinstance(workflows, dict):
            workflow_check = self._workflows.check
            for name, workflow in workflows.items():
                if isinstance(workflow, dict):
                    at = where / "workflows" / name
                    guard(
                        at,
                        f"workflow '{name}'",
                        lambda n=name, w=workflow, a=at: workflow_check(n, w, a, workflows),
                    )

    def _node_templates(self, names: list[str], where: Where) -> None:
        guard = self.reporter.guard
        base = where / "node_templates"
        nodes = self.index.nodes
        for name in names:
            at = base / name
            guard(
                at,
                f"node template '{name}'",
                lambda n=name, b=nodes[name], a=at: self._node_template(n, b, a),
            )

    def _node_template(self, name: str, body: dict[str, Any], where: Where) -> None:
        """One node template (a method of its own: the place to break in, for tests too)."""
        self._nodes.check(name, body, where)
