"""TOSCA functions evaluated at run time, nested to any depth, against live instance data.

The validator already checked each call's shape; this module only looks values up. Entities:
SELF, SOURCE, TARGET, HOST (the HostedOn chain, nearest first), node names (one value, or a
list when the node has several instances), relationship template names and, for get_property,
policy names (or, as xOpera allows, the type of the one policy meant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orch.executors.base import as_text
from orch.plan.instances import links
from orch.plan.steps import Instance, Link
from orch.tosca.model import FileRef, Model, Node, Operation, Requirement
from orch.tosca.values import FUNCTION_NAMES

_MISSING = object()
_KEYWORDS = frozenset({"SELF", "SOURCE", "TARGET", "HOST", "REQ_TARGET"})
READ_ONLY_ATTRIBUTES = frozenset({"tosca_id", "tosca_name", "state"})
"""Attributes orch maintains itself: an operation's outputs never set them implicitly."""


class EvaluationError(Exception):
    """A function cannot be evaluated (missing attribute, unknown entity...)."""


def link_key(link: Link) -> str:
    return f"{link.source}>{link.target}#{link.requirement}"


@dataclass
class Scope:
    """Where a value is evaluated: the instance SELF is, or the relationship between two."""

    instance: str | None = None
    link: Link | None = None
    workflow_inputs: dict[str, Any] = field(default_factory=dict)
    artifacts: list[FileRef] = field(default_factory=list)
    """Artifacts named by get_artifact: the executor copies them into the work directory."""

    def nested(self, instance: str | None = None, link: Link | None = None) -> Scope:
        """The scope of a value defined elsewhere (a property of another node...), read for
        this one: its get_artifact calls still deliver their files to this operation."""
        return Scope(instance, link, self.workflow_inputs, self.artifacts)


def stored_evaluator(
    store: Any,
    name: str,
    model: Model,
    instances: dict[str, Instance],
    inputs: dict[str, Any],
    rows: Any = None,
) -> Evaluator:
    """An evaluator over what deployment ``name`` recorded: its instances' and relationships'
    attributes and the outputs of each operation's last success (``rows``: the instance rows,
    when the caller read them already)."""
    rows = store.instances(name) if rows is None else rows
    attributes = {row.id: dict(row.attributes) for row in rows}
    attributes.update(store.link_attributes(name))
    outputs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for op in store.operations(name):
        if op.status == "ok":
            outputs[(op.instance, op.interface, op.operation)] = op.outputs
    return Evaluator(model, instances, inputs, attributes, outputs)


class Evaluator:
    def __init__(
        self,
        model: Model,
        instances: dict[str, Instance],
        inputs: dict[str, Any],
        attributes: dict[str, dict[str, Any]],
        outputs: dict[tuple[str, str, str], dict[str, Any]],
    ):
        self.model = model
        self.instances = instances
        self.inputs = inputs
        self.attributes = attributes
        """instance id (or link key) -> live attribute values."""
        self.outputs = outputs
        """(instance id or link key, interface, operation) -> outputs of its last success."""
        self.by_node: dict[str, list[str]] = {}
        for instance in instances.values():
            self.by_node.setdefault(instance.node, []).append(instance.id)
        self._links: list[Link] | None = None
        """Relationship instances, made when a function first names a relationship template."""
        self.secret_values: set[str] = set()
        self.secret_reads = 0
        """get_secret values given so far (masked like secret inputs), and how many calls."""

    # ------------------------------------------------------------------ entry point
    def value(self, value: Any, scope: Scope) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((name, args),) = value.items()
                if name in FUNCTION_NAMES:
                    return self.call(str(name), args, scope)
            return {k: self.value(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, scope) for v in value]
        return value

    def call(self, name: str, args: Any, scope: Scope) -> Any:
        handler = getattr(self, "_" + name, None)
        if handler is None:
            raise EvaluationError(f"{name} cannot be evaluated by orch")
        return handler(args, scope)

    # ------------------------------------------------------------------ inputs
    def _get_input(self, args: Any, scope: Scope, *, required: bool = True) -> Any:
        path = args if isinstance(args, list) else [args]
        name = self.value(path[0], scope)
        if name in scope.workflow_inputs:
            value = scope.workflow_inputs[name]
        elif name in self.inputs:
            value = self.inputs[name]
        elif required:
            raise EvaluationError(f"get_input: no value for input '{name}'")
        else:
            return None
        return _walk(value, [self.value(a, scope) for a in path[1:]], f"input '{name}'")

    def _get_input_nf(self, args: Any, scope: Scope) -> Any:
        return self._get_input(args, scope, required=False)

    # ------------------------------------------------------------------ properties, attributes
    def _get_property(self, args: Any, scope: Scope) -> Any:
        return self._member(args, scope, "properties", "get_property")

    def _get_attribute(self, args: Any, scope: Scope) -> Any:
        return self._member(args, scope, "attributes", "get_attribute")

    def _member(self, args: Any, scope: Scope, section: str, fname: str) -> Any:
        if not isinstance(args, list) or len(args) < 2:
            raise EvaluationError(f"{fname} needs [entity, name, ...]")
        args = [self.value(a, scope) for a in args]
        entity, rest = str(args[0]), args[1:]
        if entity == "SELF" and scope.instance is None and scope.link is not None:
            return self._link_member(scope.link, rest, section, fname, scope)
        if entity == "HOST":
            return self._host_member(scope, rest, section, fname)
        if entity == "REQ_TARGET":
            return self._requirement_target_member(scope, rest, section, fname)
        if entity not in _KEYWORDS and entity not in self.model.nodes:
            if entity in self.model.relationships:
                return self._relationship_member(entity, rest, section, fname, scope)
            policy = self._policy(entity, scope) if section == "properties" else None
            if policy is not None:
                return self._policy_member(policy, rest, fname, scope)
        owners = self._entity(entity, scope, fname)
        values = [self._instance_member(owner, rest, section, fname, scope) for owner in owners]
        return values[0] if len(values) == 1 else values

    def _requirement_target_member(
        self, scope: Scope, rest: list[Any], section: str, fname: str
    ) -> Any:
        """Yorc's ``[REQ_TARGET, requirement, name]``: the member of the node that SELF's
        requirement of that name (or of that definition) points at."""
        if scope.instance is None or len(rest) < 2:
            raise EvaluationError(f"{fname}: [REQ_TARGET, requirement, name] needs a node")
        node = self.model.nodes[scope.instance.rsplit("/", 1)[0]]
        wanted = str(rest[0])
        for requirement in node.requirements:
            if wanted in (requirement.name, requirement.kind):
                owners = self._entity(requirement.target, scope, fname)
                values = [self._instance_member(o, rest[1:], section, fname, scope) for o in owners]
                return values[0] if len(values) == 1 else values
        raise EvaluationError(f"{fname}: '{node.name}' has no requirement '{wanted}' assigned")

    def _entity(self, entity: str, scope: Scope, fname: str) -> list[str]:
        """Instance ids an entity names."""
        if entity == "SELF":
            if scope.instance is None:
                raise EvaluationError(f"{fname}: SELF has no instance here")
            return [scope.instance]
        if entity in ("SOURCE", "TARGET"):
            if scope.link is None:
                raise EvaluationError(
                    f"{fname}: {entity} is only defined in relationship operations"
                )
            return [scope.link.source if entity == "SOURCE" else scope.link.target]
        if entity in self.by_node:
            return self.by_node[entity]
        if entity in self.model.nodes:
            return [f"{entity}/0"]  # a node with zero instances: read its template
        raise EvaluationError(f"{fname}: no node template '{entity}'")

    def _host_member(self, scope: Scope, rest: list[Any], section: str, fname: str) -> Any:
        start = scope.instance
        if start is None and scope.link is not None:
            start = scope.link.source if scope.link.side == "source" else scope.link.target
        current = self.instances.get(start or "")
        host = current.host if current else None
        while host is not None:
            found = self._instance_member(host, rest, section, fname, scope, missing_ok=True)
            if found is not _MISSING:
                return found
            host = self.instances[host].host
        raise EvaluationError(f"{fname}: no host of '{start}' has {_what(section)} '{rest[0]}'")

    def _instance_member(
        self,
        instance_id: str,
        rest: list[Any],
        section: str,
        fname: str,
        scope: Scope,
        missing_ok: bool = False,
    ) -> Any:
        node_name = instance_id.rsplit("/", 1)[0]
        node = self.model.nodes[node_name]
        name = rest[0]
        if len(rest) >= 2 and isinstance(name, str):
            nested = self._capability_or_requirement(node, instance_id, rest, section, scope)
            if nested is not _MISSING:
                return nested
        value = self._lookup(node, instance_id, str(name), section, scope)
        if value is _MISSING:
            if missing_ok:
                return _MISSING
            if self.model.is_alien:
                # Yorc: a property or attribute without a value reads as nothing (the types'
                # playbooks test ``| length > 0``); names the types do not declare are refused
                # by validation already
                return None
            raise EvaluationError(f"{fname}: node '{node_name}' has no {_what(section)} '{name}'")
        return _walk(value, rest[1:], f"{node_name}.{name}")

    def _lookup(self, node: Node, instance_id: str, name: str, section: str, scope: Scope) -> Any:
        if section == "attributes":
            live = self.attributes.get(instance_id, {})
            if name in live:
                return live[name]
            if name == "tosca_id":
                return instance_id
            if name == "tosca_name":
                return node.name
            if name in node.attributes:
                return self.value(node.attributes[name], scope.nested(instance=instance_id))
        if name in node.properties:
            return self.value(node.properties[name], scope.nested(instance=instance_id))
        return _MISSING

    def _capability_or_requirement(
        self, node: Node, instance_id: str, rest: list[Any], section: str, scope: Scope
    ) -> Any:
        first, name = rest[0], rest[1]
        capability = node.capabilities.get(first)
        if capability is not None:
            for key in (section, "properties"):
                if name in capability.get(key, {}):
                    value = self.value(
                        capability[key][name], scope.nested(instance=instance_id)
                    )
                    return _walk(value, rest[2:], f"{node.name}.{first}.{name}")
        for requirement in node.requirements:
            if requirement.name == first:
                target = self.model.nodes.get(requirement.target)
                if target is None:
                    break
                target_instance = self.by_node.get(target.name, [f"{target.name}/0"])[0]
                if requirement.capability in target.capabilities:
                    found = self._capability_or_requirement(
                        target, target_instance, [requirement.capability, *rest[1:]], section, scope
                    )
                    if found is not _MISSING:
                        return found
                value = self._lookup(target, target_instance, str(name), section, scope)
                if value is not _MISSING:
                    return _walk(value, rest[2:], f"{target.name}.{name}")
        return _MISSING

    def _link_member(
        self, link: Link, rest: list[Any], section: str, fname: str, scope: Scope
    ) -> Any:
        requirement = self._requirement(link)
        name = rest[0]
        live = self.attributes.get(link_key(link), {})
        if section == "attributes" and name in live:
            value = live[name]
        elif section == "attributes" and name in requirement.attributes:
            value = self.value(requirement.attributes[name], scope.nested(link=link))
        elif name in requirement.properties:
            value = self.value(requirement.properties[name], scope.nested(link=link))
        else:
            raise EvaluationError(
                f"{fname}: relationship '{requirement.name}' has no {_what(section)} '{name}'"
            )
        return _walk(value, rest[1:], f"{requirement.name}.{name}")

    def _requirement(self, link: Link) -> Requirement:
        return self.model.nodes[link.source.rsplit("/", 1)[0]].requirements[link.requirement]

    def _relationship_member(
        self, template: str, rest: list[Any], section: str, fname: str, scope: Scope
    ) -> Any:
        """A relationship template by name: its relationship instances (one value, or a list),
        or the template itself when no requirement uses it."""
        if self._links is None:
            self._links = links(self.model, self.instances)
        used = [link for link in self._links if self._requirement(link).template == template]
        if used:
            values = [self._link_member(link, rest, section, fname, scope) for link in used]
            return values[0] if len(values) == 1 else values
        definition = self.model.relationships[template]
        name = rest[0]
        for key in ("attributes", "properties") if section == "attributes" else ("properties",):
            if name in definition.get(key, {}):
                value = self.value(definition[key][name], scope.nested())
                return _walk(value, rest[1:], f"{template}.{name}")
        raise EvaluationError(
            f"{fname}: relationship template '{template}' has no {_what(section)} '{name}'"
        )

    def _policy(self, entity: str, scope: Scope) -> dict[str, Any] | None:
        """A policy by name; else (xOpera's extension) by type: the one policy of that type
        that targets SELF's node, or the one of that type in the topology."""
        if entity in self.model.policies:
            return self.model.policies[entity]
        typed = [p for p in self.model.policies.values() if entity in p.get("types", ())]
        node = (scope.instance or "").rsplit("/", 1)[0]
        targeting = [p for p in typed if node in p.get("targets", ())]
        found = targeting or typed
        if len(found) > 1:
            raise EvaluationError(
                f"{len(found)} policies of type '{entity}' apply here: name the policy instead"
            )
        return found[0] if found else None

    def _policy_member(
        self, policy: dict[str, Any], rest: list[Any], fname: str, scope: Scope
    ) -> Any:
        name = rest[0]
        properties = policy.get("properties", {})
        if name not in properties:
            raise EvaluationError(f"{fname}: policy of type '{policy.get('type')}' has no "
                                  f"property '{name}'")
        return _walk(self.value(properties[name], scope.nested()), rest[1:], f"policy.{name}")

    def outputs_of(self, model: Model) -> dict[str, Any]:
        """The blueprint's outputs, evaluated now; a value that cannot be evaluated is None."""
        values: dict[str, Any] = {}
        for name, definition in model.outputs.items():
            try:
                before = self.secret_reads
                values[name] = self.value((definition or {}).get("value"), Scope())
                if self.secret_reads != before:  # read get_secret: never shown nor stored
                    values[name] = "<secret: hidden>"
            except EvaluationError:
                values[name] = None
        return values

    # ------------------------------------------------------------------ attribute mappings
    def output_mappings(
        self, operation: Operation, instance: str, link: Link | None, outputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """An operation's attribute mappings: its TOSCA 1.3 ``outputs``, then, as xOpera does
        with ``set_stats``, each other output named like an attribute that SELF (the node, or
        the relationship of a relationship operation) declares sets that attribute; every
        output of a built-in executor chosen by type does."""
        if link is not None:
            declared = self._requirement(link).attribute_types
        else:
            declared = self.model.nodes[instance.rsplit("/", 1)[0]].attribute_types
        # an executor chosen by type (tosca/bindings.py) reports what the next nodes read
        # (image_path, image_file_path, target_path...), which the type cannot declare
        by_type = operation.replaces is not None and operation.implementation is not None
        implicit = {
            name: ["SELF", name]
            for name in outputs
            if (by_type or name in declared) and name not in READ_ONLY_ATTRIBUTES
        }
        return {**implicit, **operation.outputs}

    # ------------------------------------------------------------------ operation outputs
    def _get_operation_output(self, args: Any, scope: Scope) -> Any:
        if not isinstance(args, list) or len(args) != 4:
            raise EvaluationError("get_operation_output needs [entity, interface, operation, name]")
        entity, interface, operation, name = (str(self.value(a, scope)) for a in args)
        if entity == "SELF" and scope.instance is None and scope.link is not None:
            owners = [link_key(scope.link)]
        else:
            owners = self._entity(entity, scope, "get_operation_output")
        values = []
        for owner in owners:
            found = self._find_outputs(owner, interface, operation)
            if found is None or name not in found:
                raise EvaluationError(
                    f"get_operation_output: {owner} {interface}.{operation} has no output "
                    f"'{name}' (has it run? outputs: {', '.join(sorted(found or {})) or 'none'})"
                )
            values.append(found[name])
        return values[0] if len(values) == 1 else values

    def _find_outputs(self, owner: str, interface: str, operation: str) -> dict[str, Any] | None:
        short = interface.rsplit(".", 1)[-1]
        for (key, iface, op), outputs in self.outputs.items():
            if key == owner and op == operation and iface.rsplit(".", 1)[-1] == short:
                return outputs
        return None

    # ------------------------------------------------------------------ strings, lists
    def _concat(self, args: Any, scope: Scope) -> str:
        parts = args if isinstance(args, list) else [args]
        return "".join(_text(self.value(p, scope)) for p in parts)

    def _join(self, args: Any, scope: Scope) -> str:
        if not isinstance(args, list) or not args:
            raise EvaluationError("join needs [[values...], delimiter]")
        values = self.value(args[0], scope)
        delimiter = _text(self.value(args[1], scope)) if len(args) > 1 else ""
        values = values if isinstance(values, list) else [values]
        return delimiter.join(_text(v) for v in values)

    def _token(self, args: Any, scope: Scope) -> str:
        if not isinstance(args, list) or len(args) != 3:
            raise EvaluationError("token needs [string, separators, index]")
        text, separators, index = (self.value(a, scope) for a in args)
        # TOSCA 1.3 (4.3.3): substrings separated by one or more of the token characters
        pieces = [p for p in re.split("[" + re.escape(_text(separators)) + "]+", _text(text)) if p]
        try:
            return pieces[int(index)]
        except (IndexError, ValueError, TypeError):
            raise EvaluationError(
                f"token: index {index} out of range: '{text}' has {len(pieces)} pieces"
            ) from None

    def _get_nodes_of_type(self, args: Any, scope: Scope) -> list[str]:
        wanted = str(self.value(args[0] if isinstance(args, list) else args, scope))
        short = wanted.rsplit(".", 1)[-1].split(":")[-1]
        return [
            name
            for name, node in self.model.nodes.items()
            if wanted in node.types or any(t.rsplit(".", 1)[-1] == short for t in node.types)
        ]

    def _get_artifact(self, args: Any, scope: Scope) -> str:
        if not isinstance(args, list) or len(args) < 2:
            raise EvaluationError("get_artifact needs [entity, artifact_name]")
        entity, name = str(self.value(args[0], scope)), str(self.value(args[1], scope))
        owner = self._entity(entity, scope, "get_artifact")[0]
        node = self.model.nodes[owner.rsplit("/", 1)[0]]
        artifact = node.artifacts.get(name)
        if artifact is None:
            known = ", ".join(sorted(node.artifacts)) or "none"
            raise EvaluationError(
                f"get_artifact: node '{node.name}' has no artifact '{name}'; it has: {known}"
            )
        scope.artifacts.append(artifact)
        return artifact.name

    def _get_secret(self, args: Any, scope: Scope) -> Any:
        """Yorc's get_secret [path, data=field, ...], from orch's secret store."""
        from orch.sites.secrets import SecretError, lookup

        parts = [self.value(a, scope) for a in (args if isinstance(args, list) else [args])]
        try:
            value = lookup(parts[0] if parts else None, parts[1:])
        except SecretError as exc:
            raise EvaluationError(f"get_secret: {exc}") from None
        self.secret_values.add(value)
        self.secret_reads += 1
        return value

    _get_vault_secret = _get_secret


def _walk(value: Any, path: list[Any], what: str) -> Any:
    for key in path:
        size = len(value) if isinstance(value, list) else 0
        in_list = isinstance(key, int) and not isinstance(key, bool) and -size <= key < size
        if in_list or (isinstance(value, dict) and key in value):
            value = value[key]
        else:
            raise EvaluationError(f"{what} has no field {key!r}")
    return value


def _what(section: str) -> str:
    return "attribute" if section == "attributes" else "property"


_text = as_text
"""Strings that functions (concat, join, token) make of values: as environment variables."""
