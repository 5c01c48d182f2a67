"""The resolved service template: what the planner and engine need, as plain JSON-able data.

Built once from a validated blueprint: types are merged along ``derived_from``, defaults filled
in, requirements resolved to target templates and relationship types, operations resolved to
their implementation files. Functions stay unevaluated (the engine evaluates them at run time).
A deployment stores this model as its snapshot, so later commands never re-read the blueprint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orch.tosca.states import BUILTIN_ARTIFACT as BUILTIN_ARTIFACT  # re-exported
from orch.tosca.states import BUILTIN_ARTIFACTS as BUILTIN_ARTIFACTS
from orch.tosca.states import JOB_STATES as JOB_STATES
from orch.tosca.states import NODE_STATES as NODE_STATES
from orch.tosca.types import (
    TypeDef,
    TypeRegistry,
    entries,
    interface_operations,
    merge_interface,
    same_interface,
)

STANDARD = "tosca.interfaces.node.lifecycle.Standard"
CONFIGURE = "tosca.interfaces.relationship.Configure"
RUNNABLE = "tosca.interfaces.node.lifecycle.Runnable"
GROUP_TYPE = "orch.groups.CoScheduled"
"""orch's group of jobs that start together (one heterogeneous job)."""
"""Alien4Cloud/Yorc's job interface (submit, run, cancel); orch's own job types use an interface
type of the same short name, which Node.operation matches too."""
HOSTED_ON = "tosca.relationships.HostedOn"
DEPENDS_ON = "tosca.relationships.DependsOn"
CONNECTS_TO = "tosca.relationships.ConnectsTo"
COMPUTE = "tosca.nodes.Compute"
SCALABLE = "tosca.capabilities.Scalable"

MODEL_VERSION = 1


@dataclass
class FileRef:
    """A file an operation needs: ``name`` is its path in the operation's work directory."""

    name: str
    path: str
    """Absolute path on the machine that built the model (the snapshot stores its content)."""
    type: str | None = None
    sha: str | None = None
    """Content hash in the state store, set when the deployment is snapshotted."""
    builtin: bool = False
    """Not a file: an orch executor's name (the artifact type is or derives from a builtin)."""


@dataclass
class Operation:
    interface: str
    """Interface name as written in the blueprint, e.g. 'Standard'."""
    interface_type: str | None
    name: str
    implementation: FileRef | None = None
    dependencies: list[FileRef] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    """Input values, functions unevaluated."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """TOSCA 1.3 attribute mappings: output name -> [SELF|SOURCE|TARGET, attribute, ...]."""
    timeout: float | None = None
    operation_host: str | None = None
    replaces: str | None = None
    """The implementation the type wrote, when orch runs a built-in executor in its place."""


@dataclass
class Requirement:
    name: str
    target: str
    """The target node template."""
    capability: str | None
    relationship: str
    """Relationship type name, full."""
    relationship_types: list[str]
    """The relationship type and its ancestors, nearest first."""
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    interfaces: dict[str, dict[str, Operation]] = field(default_factory=dict)
    template: str | None = None
    """The relationship template it uses, if any: functions may name it (get_attribute)."""
    attribute_types: dict[str, str] = field(default_factory=dict)
    """Attributes the relationship type declares, with their types."""
    kind: str | None = None
    """The requirement definition it assigns, when its name differs (Alien4Cloud's
    ``type_requirement``): ``REQ_TARGET`` finds it by either."""

    def is_a(self, type_name: str) -> bool:
        return type_name in self.relationship_types


@dataclass
class Node:
    name: str
    type: str
    types: list[str]
    """The node type and its ancestors, nearest first."""
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {type, types, properties, attributes}."""
    requirements: list[Requirement] = field(default_factory=list)
    interfaces: dict[str, dict[str, Operation]] = field(default_factory=dict)
    artifacts: dict[str, FileRef] = field(default_factory=dict)
    default_instances: int = 1
    attribute_types: dict[str, str] = field(default_factory=dict)
    """Declared attribute types: script outputs (text) mapped to attributes take this type."""

    def is_a(self, type_name: str) -> bool:
        return type_name in self.types

    def host(self) -> str | None:
        """The node this one is HostedOn, if any."""
        for requirement in self.requirements:
            if requirement.is_a(HOSTED_ON):
                return requirement.target
        return None

    @property
    def is_job(self) -> bool:
        """A job: its Runnable interface has a ``submit`` implementation."""
        submit = self.operation(RUNNABLE, "submit")
        return submit is not None and submit.implementation is not None

    def operation(self, interface: str, name: str) -> Operation | None:
        """An operation by interface (name, type or short type name) and operation name."""
        for key, operations in self.interfaces.items():
            if name in operations and _interface_matches(key, operations[name], interface):
                return operations[name]
        return None


def _interface_matches(key: str, operation: Operation, wanted: str) -> bool:
    if key == wanted or operation.interface_type == wanted:
        return True
    short = wanted.rsplit(".", 1)[-1]
    return key.rsplit(".", 1)[-1] == short or (
        operation.interface_type is not None and operation.interface_type.endswith("." + short)
    )


@dataclass
class Model:
    entry: str
    base_dir: str
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Input definitions as written (type, default, required, description, ...)."""
    nodes: dict[str, Node] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    workflows: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    version: int = MODEL_VERSION
    relationships: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Relationship templates: name -> {type, types, properties, attributes}; functions name
    them, used by a requirement or not."""
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Policies: name -> {type, types, properties, targets}; get_property reads them."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Groups: name -> {type, types, properties, members} (co-scheduled jobs are one)."""
    dialect: str = ""
    """The entry's ``tosca_definitions_version`` (``alien_dsl_3_0_0`` runs as Yorc would)."""

    @property
    def is_alien(self) -> bool:
        """An Alien4Cloud topology: jobs run in workflows, never in deploy."""
        return self.dialect.startswith("alien_dsl")

    # ------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        nodes = {name: _node_from_dict(body) for name, body in data.get("nodes", {}).items()}
        return cls(
            entry=data["entry"],
            base_dir=data["base_dir"],
            inputs=data.get("inputs", {}),
            nodes=nodes,
            outputs=data.get("outputs", {}),
            workflows=data.get("workflows", {}),
            description=data.get("description"),
            version=data.get("version", MODEL_VERSION),
            relationships=data.get("relationships", {}),
            policies=data.get("policies", {}),
            groups=data.get("groups", {}),
            dialect=data.get("dialect", ""),
        )

    def files(self) -> list[FileRef]:
        """Every file the operations need (implementations, dependencies, artifacts)."""
        found: list[FileRef] = []
        for node in self.nodes.values():
            found.extend(node.artifacts.values())
            for operations in _all_operations(node):
                for operation in operations:
                    implementation = operation.implementation
                    if implementation is not None and not implementation.builtin:
                        found.append(implementation)
                    found.extend(operation.dependencies)
        return found


def _all_operations(node: Node) -> list[list[Operation]]:
    groups = [list(ops.values()) for ops in node.interfaces.values()]
    for requirement in node.requirements:
        groups.extend(list(ops.values()) for ops in requirement.interfaces.values())
    return groups


def _file_from_dict(data: dict[str, Any] | None) -> FileRef | None:
    return FileRef(**data) if data else None


def _operation_from_dict(data: dict[str, Any]) -> Operation:
    return Operation(
        **{
            **data,
            "implementation": _file_from_dict(data.get("implementation")),
            "dependencies": [FileRef(**d) for d in data.get("dependencies", [])],
        }
    )


def _interfaces_from_dict(data: dict[str, Any]) -> dict[str, dict[str, Operation]]:
    return {
        name: {op: _operation_from_dict(body) for op, body in ops.items()}
        for name, ops in data.items()
    }


def _node_from_dict(data: dict[str, Any]) -> Node:
    requirements = [
        Requirement(**{**r, "interfaces": _interfaces_from_dict(r.get("interfaces", {}))})
        for r in data.get("requirements", [])
    ]
    return Node(
        **{
            **data,
            "requirements": requirements,
            "interfaces": _interfaces_from_dict(data.get("interfaces", {})),
            "artifacts": {k: FileRef(**v) for k, v in data.get("artifacts", {}).items()},
        }
    )


# ---------------------------------------------------------------------------- building
class ModelBuilder:
    """Builds the Model of a validated blueprint (no diagnostics: the validator already spoke)."""

    def __init__(self, registry: TypeRegistry, data: dict[str, Any], entry: str):
        self.registry = registry
        self.data = data
        self.entry = str(Path(entry).resolve())
        self.base_dir = os.path.dirname(self.entry)
        topology = data.get("topology_template")
        self.topology: dict[str, Any] = topology if isinstance(topology, dict) else {}
        templates = self.topology.get("node_templates")
        self.templates: dict[str, Any] = templates if isinstance(templates, dict) else {}
        relationships = self.topology.get("relationship_templates")
        self.relationship_templates: dict[str, Any] = (
            relationships if isinstance(relationships, dict) else {}
        )

    def build(self) -> Model:
        nodes = {}
        for name, body in self.templates.items():
            if isinstance(body, dict):
                nodes[str(name)] = self._node(str(name), body)
        inputs = self.topology.get("inputs")
        outputs = self.topology.get("outputs")
        workflows = self.topology.get("workflows")
        description = self.data.get("description")
        return Model(
            entry=self.entry,
            base_dir=self.base_dir,
            inputs=inputs if isinstance(inputs, dict) else {},
            nodes=nodes,
            outputs={
                str(k): (v if isinstance(v, dict) else {"value": v})
                for k, v in (outputs.items() if isinstance(outputs, dict) else [])
            },
            workflows=workflows if isinstance(workflows, dict) else {},
            description=description if isinstance(description, str) else None,
            relationships={
                str(name): self._relationship_template(body)
                for name, body in self.relationship_templates.items()
                if isinstance(body, dict)
            },
            policies=self._policies(self.topology.get("policies")),
            groups=self._groups(self.topology.get("groups")),
            dialect=str(self.data.get("tosca_definitions_version") or ""),
        )

    # ------------------------------------------------------------ nodes
    def _node(self, name: str, body: dict[str, Any]) -> Node:
        typedef = self.registry.get("node_types", body.get("type"))
        types = [t.name for t in self.registry.ancestry(typedef)] if typedef else []
        properties = self._values(typedef, "properties", body.get("properties"))
        attributes = self._values(typedef, "attributes", body.get("attributes"))
        capabilities = self._capabilities(typedef, body.get("capabilities"))
        node = Node(
            name=name,
            type=typedef.name if typedef else str(body.get("type")),
            types=types,
            properties=properties,
            attributes=attributes,
            capabilities=capabilities,
            artifacts=self._artifacts(typedef, body.get("artifacts")),
        )
        node.interfaces = self._interfaces(
            self.registry.members(typedef, "interfaces") if typedef else {},
            body.get("interfaces"),
            node.artifacts,
        )
        _bind(node)
        node.requirements = self._requirements(name, typedef, body.get("requirements"))
        node.default_instances = _default_instances(capabilities)
        node.attribute_types = self._attribute_types(typedef)
        return node

    def _attribute_types(self, typedef: TypeDef | None) -> dict[str, str]:
        """Declared attributes and their types: outputs (text) mapped to them take the type."""
        types: dict[str, str] = {}
        if typedef is not None:
            for attribute, (definition, _owner) in self.registry.members(
                typedef, "attributes"
            ).items():
                if isinstance(definition, dict) and isinstance(definition.get("type"), str):
                    types[attribute] = definition["type"]
        return types

    def _values(self, typedef: TypeDef | None, section: str, assigned: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if typedef is not None:
            for name, (definition, _owner) in self.registry.members(typedef, section).items():
                if isinstance(definition, dict):
                    if "value" in definition:
                        values[name] = definition["value"]
                    elif "default" in definition:
                        values[name] = definition["default"]
        if isinstance(assigned, dict):
            values.update({str(k): v for k, v in assigned.items()})
        return values

    def _capabilities(self, typedef: TypeDef | None, assigned: Any) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        declared = self.registry.members(typedef, "capabilities") if typedef else {}
        assigned = assigned if isinstance(assigned, dict) else {}
        for name in {*declared, *assigned}:
            definition = declared.get(name, (None, None))[0]
            type_name = definition if isinstance(definition, str) else None
            if isinstance(definition, dict):
                type_name = definition.get("type")
            captype = self.registry.get("capability_types", type_name)
            body = assigned.get(name) if isinstance(assigned.get(name), dict) else {}
            properties = self._values(captype, "properties", None)
            attributes = self._values(captype, "attributes", None)
            if isinstance(definition, dict):
                properties.update(_definition_values(definition.get("properties")))
                attributes.update(_definition_values(definition.get("attributes")))
            if isinstance(body.get("properties"), dict):
                properties.update(body["properties"])
            if isinstance(body.get("attributes"), dict):
                attributes.update(body["attributes"])
            result[str(name)] = {
                "type": captype.name if captype else type_name,
                "types": [t.name for t in self.registry.ancestry(captype)] if captype else [],
                "properties": properties,
                "attributes": attributes,
            }
        return result

    def _artifacts(self, typedef: TypeDef | None, assigned: Any) -> dict[str, FileRef]:
        artifacts: dict[str, FileRef] = {}
        declared = self.registry.members(typedef, "artifacts") if typedef else {}
        for name, (definition, owner) in declared.items():
            ref = self._artifact(definition, _dir_of(owner))
            if ref is not None:
                artifacts[name] = ref
        for name, definition in entries(assigned):
            ref = self._artifact(definition, self.base_dir)
            if ref is not None:
                artifacts[name] = ref
        return artifacts

    def _artifact(self, definition: Any, base: str) -> FileRef | None:
        file = definition.get("file") if isinstance(definition, dict) else definition
        if not isinstance(file, str) or "://" in file:
            return None
        kind = definition.get("type") if isinstance(definition, dict) else None
        return self._file(file, base, kind)

    def _file(self, file: str, base: str, kind: Any = None) -> FileRef:
        path = os.path.normpath(os.path.join(base, file))
        if os.path.isabs(file) and not os.path.exists(path):
            # not a file of this machine: rooted at the CSAR, as xOpera reads '/modules/x.yaml'
            rooted = os.path.normpath(os.path.join(self._csar_root(), file.lstrip("/")))
            if os.path.exists(rooted):
                path = rooted
        relative = os.path.relpath(path, self.base_dir)
        name = relative if not relative.startswith("..") else os.path.basename(path)
        artifact_type = self.registry.get("artifact_types", kind) if kind else None
        builtin = any(self.registry.is_a(artifact_type, b) for b in BUILTIN_ARTIFACTS)
        if builtin:
            name = file
        return FileRef(
            name=name, path=path, type=artifact_type.name if artifact_type else _str(kind),
            builtin=builtin,
        )

    def _csar_root(self) -> str:
        """The folder holding ``TOSCA-Metadata/TOSCA.meta`` above the entry, else its folder."""
        folder = self.base_dir
        while True:
            if os.path.isfile(os.path.join(folder, "TOSCA-Metadata", "TOSCA.meta")):
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                return self.base_dir
            folder = parent

    # ------------------------------------------------------------ interfaces
    def _interfaces(
        self,
        declared: dict[str, tuple[Any, TypeDef]],
        assigned: Any,
        artifacts: dict[str, FileRef],
    ) -> dict[str, dict[str, Operation]]:
        result: dict[str, dict[str, Operation]] = {}
        assigned = assigned if isinstance(assigned, dict) else {}
        # a template's ``Standard:`` fills its type's ``tosca.interfaces.node.lifecycle.Standard``
        renamed: dict[str, Any] = {}
        for key, value in assigned.items():
            if isinstance(key, str):
                target = same_interface(declared, key, value)
                if target in renamed:  # written twice, under both names: merge, the later wins
                    value = merge_interface(renamed[target], value)
                renamed[target] = value
        assigned = renamed
        for iname in [*declared, *(k for k in assigned if k not in declared)]:
            definition, owner = declared.get(iname, ({}, None))
            definition = definition if isinstance(definition, dict) else {}
            body = assigned.get(iname)
            body = body if isinstance(body, dict) else {}
            itype = definition.get("type") or body.get("type") or _default_interface(iname)
            itype_def = self.registry.get("interface_types", itype)
            itype = itype_def.name if itype_def else itype
            type_base = _dir_of(owner) if owner is not None else self.base_dir
            common_inputs = {
                **_definition_values(definition.get("inputs")),
                **_assignments(body.get("inputs")),
            }
            declared_ops = interface_operations(definition)
            assigned_ops = interface_operations(body)
            operations: dict[str, Operation] = {}
            for op_name in [*declared_ops, *(k for k in assigned_ops if k not in declared_ops)]:
                operation = Operation(interface=str(iname), interface_type=itype, name=op_name)
                operation.inputs.update(common_inputs)
                for source, base, is_definition in (
                    (declared_ops.get(op_name), type_base, True),
                    (assigned_ops.get(op_name), self.base_dir, False),
                ):
                    self._merge_operation(operation, source, base, artifacts, is_definition)
                operations[str(op_name)] = operation
            result[str(iname)] = operations
        return result

    def _merge_operation(
        self,
        operation: Operation,
        source: Any,
        base: str,
        artifacts: dict[str, FileRef],
        is_definition: bool,
    ) -> None:
        if source is None:
            return
        implementation = source.get("implementation") if isinstance(source, dict) else source
        if isinstance(source, dict):
            operation.inputs.update(
                _definition_values(source.get("inputs"))
                if is_definition
                else _assignments(source.get("inputs"))
            )
            if isinstance(source.get("outputs"), dict):
                operation.outputs.update(source["outputs"])
        primary: Any = implementation
        if isinstance(implementation, dict):
            # Alien4Cloud/Yorc also write the artifact itself: {file: embedded, type: ...}
            artifact = implementation if "file" in implementation else None
            primary = implementation.get("primary", artifact)
            dependencies = implementation.get("dependencies")
            if isinstance(dependencies, list):
                operation.dependencies = [
                    ref
                    for ref in (self._implementation(d, base, artifacts) for d in dependencies)
                    if ref is not None
                ]
            timeout = implementation.get("timeout")
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
                operation.timeout = float(timeout)
            host = implementation.get("operation_host")
            if isinstance(host, str):
                operation.operation_host = host
        ref = self._implementation(primary, base, artifacts)
        if ref is not None:
            operation.implementation = ref

    def _implementation(
        self, reference: Any, base: str, artifacts: dict[str, FileRef]
    ) -> FileRef | None:
        if isinstance(reference, dict):
            return self._artifact(reference, base)
        if not isinstance(reference, str) or not reference:
            return None
        if reference in artifacts:
            return artifacts[reference]
        if "://" in reference or reference.startswith("<"):
            return None
        return self._file(reference, base)

    # ------------------------------------------------------------ requirements
    def _requirements(self, node: str, typedef: TypeDef | None, assigned: Any) -> list[Requirement]:
        declared = self.registry.members(typedef, "requirements") if typedef else {}
        result: list[Requirement] = []
        for name, body in entries(assigned):
            if isinstance(body, dict) and isinstance(body.get("type_requirement"), str):
                definition = declared.get(body["type_requirement"], (None, None))[0]
            else:
                definition = declared.get(name, (None, None))[0]
            target = body if isinstance(body, str) else None
            if isinstance(body, dict):
                target = body.get("node")
            if not isinstance(target, str) or target not in self.templates:
                continue  # abstract or optional: nothing to order or to run
            capability = body.get("capability") if isinstance(body, dict) else None
            if capability is None and isinstance(definition, dict):
                capability = definition.get("capability")
            requirement = self._relationship(str(name), target, capability, body, definition)
            if isinstance(body, dict) and isinstance(body.get("type_requirement"), str):
                requirement.kind = body["type_requirement"]
            result.append(requirement)
        return result

    def _relationship(
        self, name: str, target: str, capability: Any, body: Any, definition: Any
    ) -> Requirement:
        spec: Any = body.get("relationship") if isinstance(body, dict) else None
        if spec is None and isinstance(definition, dict):
            spec = definition.get("relationship")
        template: dict[str, Any] = {}
        type_spec: Any = None
        template_name: str | None = None
        if isinstance(spec, str) and spec in self.relationship_templates:
            template = self.relationship_templates[spec] or {}
            type_spec = template.get("type")
            template_name = spec
        elif isinstance(spec, dict):
            template = spec
            type_spec = spec.get("type")
        else:
            type_spec = spec
        declared_interfaces: dict[str, tuple[Any, TypeDef]] = {}
        if isinstance(definition, dict) and isinstance(definition.get("relationship"), dict):
            declared_interfaces.update(
                {k: (v, None) for k, v in entries(definition["relationship"].get("interfaces"))}  # type: ignore[misc]
            )
        reltype = self.registry.get("relationship_types", type_spec or DEPENDS_ON)
        if reltype is None:
            reltype = self.registry.get("relationship_types", DEPENDS_ON)
        types = [t.name for t in self.registry.ancestry(reltype)] if reltype else [DEPENDS_ON]
        if reltype is not None:
            declared_interfaces = {
                **self.registry.members(reltype, "interfaces"),
                **declared_interfaces,
            }
        return Requirement(
            name=name,
            target=target,
            capability=capability if isinstance(capability, str) else None,
            relationship=types[0],
            relationship_types=types,
            properties=self._values(reltype, "properties", template.get("properties")),
            attributes=self._values(reltype, "attributes", template.get("attributes")),
            interfaces=self._interfaces(declared_interfaces, template.get("interfaces"), {}),
            template=template_name,
            attribute_types=self._attribute_types(reltype),
        )

    # ------------------------------------------------------------ relationship templates, policies
    def _relationship_template(self, body: dict[str, Any]) -> dict[str, Any]:
        reltype = self.registry.get("relationship_types", body.get("type"))
        return {
            "type": reltype.name if reltype else _str(body.get("type")),
            "types": [t.name for t in self.registry.ancestry(reltype)] if reltype else [],
            "properties": self._values(reltype, "properties", body.get("properties")),
            "attributes": self._values(reltype, "attributes", body.get("attributes")),
        }

    def _policies(self, policies: Any) -> dict[str, dict[str, Any]]:
        """Policies as data for get_property; orch enforces none of them (triggers, scaling)."""
        result: dict[str, dict[str, Any]] = {}
        for name, body in entries(policies):
            if not isinstance(body, dict):
                continue
            policy_type = self.registry.get("policy_types", body.get("type"))
            targets = body.get("targets")
            result[str(name)] = {
                "type": policy_type.name if policy_type else _str(body.get("type")),
                "types": [t.name for t in self.registry.ancestry(policy_type)]
                if policy_type
                else [],
                "properties": self._values(policy_type, "properties", body.get("properties")),
                "targets": [str(t) for t in targets] if isinstance(targets, list) else [],
            }
        return result


    def _groups(self, groups: Any) -> dict[str, dict[str, Any]]:
        """Groups as data: what the planner and the executors read of them (members)."""
        result: dict[str, dict[str, Any]] = {}
        for name, body in entries(groups):
            if not isinstance(body, dict):
                continue
            group_type = self.registry.get("group_types", body.get("type"))
            members = body.get("members")
            result[str(name)] = {
                "type": group_type.name if group_type else _str(body.get("type")),
                "types": [t.name for t in self.registry.ancestry(group_type)]
                if group_type
                else [],
                "properties": self._values(group_type, "properties", body.get("properties")),
                "members": [str(m) for m in members] if isinstance(members, list) else [],
            }
        return result


def _bind(node: Node) -> None:
    """Put orch's built-in executor in the place of the operations its type's binding names
    (``tosca/bindings.py``); the replaced implementation is kept in ``replaces``."""
    from orch.tosca.bindings import BUILTIN_TYPE, binding_for, bound_executor, standard_mode_off

    binding = binding_for(node.types)
    if binding is None:
        return
    for operations in node.interfaces.values():
        for operation in operations.values():
            decided, executor = bound_executor(binding, operation.interface_type or
                                               operation.interface, operation.name)
            if not decided:
                continue
            for unused in binding.unused_inputs:
                operation.inputs.pop(unused, None)
            if operation.implementation is not None and not operation.replaces:
                operation.replaces = operation.implementation.name
            if executor is None or (
                operation.name == "start" and standard_mode_off(binding, node.properties)
            ):
                operation.implementation = None
                continue
            operation.implementation = FileRef(
                name=executor, path=executor, type=BUILTIN_TYPE, builtin=True
            )


def _dir_of(owner: TypeDef | None) -> str:
    if owner is None or owner.where.file.path is None:
        return ""
    return os.path.dirname(os.path.abspath(owner.where.file.path))


def _default_interface(name: Any) -> str | None:
    if name == "Standard":
        return STANDARD
    if name == "Configure":
        return CONFIGURE
    return str(name) if isinstance(name, str) and "." in name else None


def _definition_values(definitions: Any) -> dict[str, Any]:
    """Values of parameter/property definitions: ``value`` or ``default`` (or a bare value)."""
    values: dict[str, Any] = {}
    if not isinstance(definitions, dict):
        return values
    for name, definition in definitions.items():
        if isinstance(definition, dict) and ("type" in definition or "default" in definition):
            if "value" in definition:
                values[str(name)] = definition["value"]
            elif "default" in definition:
                values[str(name)] = definition["default"]
        else:
            values[str(name)] = definition
    return values


def _assignments(assigned: Any) -> dict[str, Any]:
    """Template-level inputs: plain values, or (Yorc) definitions with a value."""
    if not isinstance(assigned, dict):
        return {}
    values: dict[str, Any] = {}
    for name, value in assigned.items():
        if isinstance(value, dict) and "type" in value and ("value" in value or "default" in value):
            value = value.get("value", value.get("default"))
        values[str(name)] = value
    return values


def _default_instances(capabilities: dict[str, dict[str, Any]]) -> int:
    for capability in capabilities.values():
        if SCALABLE in capability.get("types", ()):
            properties = capability.get("properties", {})
            for key in ("default_instances", "min_instances"):
                value = properties.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    return value
    return 1


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def build_model(registry: TypeRegistry, data: dict[str, Any], entry: str) -> Model:
    return ModelBuilder(registry, data, entry).build()
