"""Function calls that name things of the topology: get_property, get_attribute,
get_operation_output and get_artifact.

The entity (SELF, HOST, a template name...) must exist in that place, the property, capability,
requirement, interface, operation or artifact must be declared, and the path after a property
must follow its data type. Apart from ``orch.tosca.functions`` (dispatch, the cache of clean
calls, inputs and string functions) because these are the calls that ask the topology.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orch.tosca.checks.index import UNKNOWN
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.values import FUNCTION_NAMES, ValueChecker, describe, is_function

if TYPE_CHECKING:
    from collections.abc import Callable

    from orch.tosca.checks.index import TopologyIndex
    from orch.tosca.functions import FunctionContext

KEYWORDS = ("SELF", "SOURCE", "TARGET", "HOST", "REQ_TARGET")  # entities that are not names


class ReferenceChecker:
    """The arguments of the functions that refer to templates and their members."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.topology: TopologyIndex | None = None  # none yet: the topology is checked later
        self.values: ValueChecker | None = None

    def handlers(self) -> dict[str, Callable[[Any, Where, FunctionContext], None]]:
        """The check of each function handled here, by function name."""
        return {
            name: getattr(self, "_" + name) for name in FUNCTION_NAMES if hasattr(self, "_" + name)
        }

    def _get_property(self, args: Any, where: Where, context: FunctionContext) -> None:
        self._entity_member(args, where, context, "properties", "get_property")

    def _get_attribute(self, args: Any, where: Where, context: FunctionContext) -> None:
        self._entity_member(args, where, context, "attributes", "get_attribute")

    def _entity_member(
        self, args: Any, where: Where, context: FunctionContext, section: str, fname: str
    ) -> None:
        if not isinstance(args, list) or len(args) < 2:
            self.reporter.error(
                "function.args",
                where,
                f"{fname} takes [entity, (requirement or capability,) name, ...]",
                "entity is SELF, SOURCE, TARGET, HOST or a node template name",
            )
            return
        entity = args[0]
        if not self._entity_ok(entity, where / 0, context, fname):
            return
        if not self._path_kinds(args, where, fname):
            return
        topology = self.topology
        if topology is None:
            return
        if entity == "HOST" and not self._host_ok(context, where / 0, fname):
            return
        node_name = self._node_of(entity, context)
        if node_name is None:
            return
        node_type = topology.node_type_of(node_name)
        if node_type is None:
            return
        member = args[1]
        registry = topology.registry
        own = registry.members(node_type, section)
        if section == "attributes":
            own = {**registry.members(node_type, "properties"), **own}
        if member in own:
            if len(args) > 2:
                definition = own[member][0]
                static = topology.static_value(node_name, member, section)
                self._walk(definition, static, args, 2, where, f"{section[:-1]} '{member}'")
            return
        # a capability or requirement name, followed by the member of that
        capabilities = registry.members(node_type, "capabilities")
        requirements = registry.members(node_type, "requirements")
        if member in capabilities or member in requirements:
            if len(args) < 3:
                self.reporter.error(
                    "function.args",
                    where,
                    f"{fname} of capability/requirement '{member}' needs a property name after it",
                )
            elif member in capabilities and isinstance(args[2], str):
                captype = topology.capability_type_of(node_type, member)
                if captype is not None:
                    names = dict(registry.members(captype, "properties"))
                    if section == "attributes":
                        names.update(registry.members(captype, "attributes"))
                    if args[2] not in names and not topology.lenient_capability(
                        node_name, member, args[2]
                    ):
                        self.reporter.error(
                            "function.unknown-member",
                            where / 2,
                            f"capability '{member}' of {node_name} ({captype.name}) has no "
                            f"{'property' if section == 'properties' else 'attribute'} "
                            f"'{args[2]}'",
                            did_you_mean(args[2], names),
                        )
                    elif args[2] in names and len(args) > 3:
                        self._walk(
                            names[args[2]][0],
                            UNKNOWN,
                            args,
                            3,
                            where,
                            f"capability property '{args[2]}'",
                        )
            return
        if entity == "HOST" or entity in ("SOURCE", "TARGET", "REQ_TARGET"):
            return  # resolved along relationships at run time
        label = "property" if section == "properties" else "attribute"
        if section == "attributes" and _is_runtime_attribute(member):
            return
        self.reporter.error(
            "function.unknown-member",
            where / 1,
            f"{node_name} ({node_type.name}) has no {label}, capability or requirement '{member}'",
            did_you_mean(member, [*own, *capabilities, *requirements]),
        )

    def _path_kinds(self, args: list[Any], where: Where, fname: str) -> bool:
        """The member is a name; what follows it names fields (strings) or indexes (integers)."""
        if not isinstance(args[1], str) and not is_function(args[1]):
            self.reporter.error(
                "function.args",
                where / 1,
                f"{fname} needs a property, capability or requirement name here, "
                f"got {describe(args[1])}",
                f"write {fname}: [entity, name, (field or index, ...)]",
            )
            return False
        for i, step in enumerate(args[2:], 2):
            if type(step) not in (str, int) and not is_function(step):
                self.reporter.error(
                    "function.args",
                    where / i,
                    f"{fname} path steps are names or list indexes, got {describe(step)}",
                    "a field name (string) of a data type, a map key, or an integer list index",
                )
                return False
        return isinstance(args[1], str)

    def _host_ok(self, context: FunctionContext, where: Where, fname: str) -> bool:
        """HOST names the node the SELF node is hosted on: it needs a HostedOn requirement."""
        topology = self.topology
        node = context.node
        if topology is None or node is None or context.relationship:
            return True
        if topology.has_host(node):
            return True
        node_type = topology.node_type_of(node)
        self.reporter.error(
            "function.host",
            where,
            f"{fname} of HOST, but node '{node}' "
            f"({node_type.name if node_type else '?'}) has no host: neither its type nor the "
            "template has a requirement with a HostedOn relationship",
            "name the node template instead of HOST, or give the node a host requirement",
        )
        return False

    def _walk(
        self, definition: Any, value: Any, args: list[Any], start: int, where: Where, what: str
    ) -> None:
        """Follow ``args[start:]`` into the value's schema: fields, map keys, list indexes."""
        topology = self.topology
        values = self.values
        if topology is None or values is None:
            return
        schema = (
            values.schema_of(definition, where) if isinstance(definition, (dict, str)) else None
        )
        for i in range(start, len(args)):
            step = args[i]
            if schema is None or is_function(step):
                return
            primitive = schema.primitive
            if primitive == "list":
                if type(step) is not int or step < 0:
                    self.reporter.error(
                        "function.args",
                        where / i,
                        f"{what} is a list: expected a list index, got {describe(step)}",
                        "list indexes are integers from 0",
                    )
                    return
                if type(value) is list:
                    if step >= len(value):
                        self.reporter.error(
                            "function.index",
                            where / i,
                            f"index {step} is out of range: {what} has {len(value)} "
                            f"entr{'y' if len(value) == 1 else 'ies'}",
                            f"valid indexes: 0 to {len(value) - 1}" if value else "it is empty",
                        )
                        return
                    value = value[step]
                else:
                    value = UNKNOWN
                schema, what = schema.entry, f"entry {step} of {what}"
            elif primitive == "map":
                if type(step) is not str:
                    self.reporter.error(
                        "function.args",
                        where / i,
                        f"{what} is a map: expected a key, got {describe(step)}",
                        "map keys are strings",
                    )
                    return
                value = value.get(step, UNKNOWN) if type(value) is dict else UNKNOWN
                schema, what = schema.entry, f"entry '{step}' of {what}"
            elif primitive is None and schema.datatype is not None:
                fields = topology.registry.members(schema.datatype, "properties")
                found = fields.get(step) if type(step) is str else None
                if found is None:
                    self.reporter.error(
                        "function.unknown-member",
                        where / i,
                        f"data type {schema.datatype.name} of {what} has no field '{step}'",
                        did_you_mean(str(step), fields)
                        or f"{schema.datatype.name} declares no fields",
                    )
                    return
                value = value.get(step, UNKNOWN) if type(value) is dict else UNKNOWN
                schema = values.schema_of(found[0], where)
                what = f"field '{step}' of {what}"
            elif primitive == "any":
                return
            else:
                self.reporter.error(
                    "function.args",
                    where / i,
                    f"{what} is a {schema.type_name}: it has no field or index '{step}'",
                    "only lists, maps and complex data types can be followed further",
                )
                return

    def _entity_ok(self, entity: Any, where: Where, context: FunctionContext, fname: str) -> bool:
        if not isinstance(entity, str):
            self.reporter.error(
                "function.args", where, f"{fname} entity must be a name, got {describe(entity)}"
            )
            return False
        if entity in ("SOURCE", "TARGET") and not context.relationship:
            if context.node is None and not context.in_outputs:
                return True
            self.reporter.error(
                "function.keyword",
                where,
                f"{entity} is only meaningful in a relationship's context",
                "use SELF, HOST or a node template name here",
            )
            return False
        if entity == "SELF" and context.node is None and context.in_outputs:
            self.reporter.error(
                "function.keyword",
                where,
                "SELF has no meaning in topology outputs",
                "name the node template instead",
            )
            return False
        if entity in KEYWORDS:
            return True
        topology = self.topology
        if topology is not None and not topology.has_template(entity):
            self.reporter.error(
                "function.unknown-node",
                where,
                f"{fname} refers to unknown node template '{entity}'",
                did_you_mean(entity, topology.template_names()),
            )
            return False
        return True

    def _node_of(self, entity: str, context: FunctionContext) -> str | None:
        if entity == "SELF":
            return None if context.relationship else context.node
        if entity in KEYWORDS:
            return None
        topology = self.topology
        if topology is not None and topology.is_node(entity):
            return entity
        return None

    def _get_operation_output(self, args: Any, where: Where, context: FunctionContext) -> None:
        if not isinstance(args, list) or len(args) != 4:
            self.reporter.error(
                "function.args",
                where,
                "get_operation_output takes [entity, interface, operation, output]",
            )
            return
        if not self._entity_ok(args[0], where / 0, context, "get_operation_output"):
            return
        topology = self.topology
        node_name = self._node_of(args[0], context) if isinstance(args[0], str) else None
        if topology is None or node_name is None:
            return
        operations = topology.operations_of(node_name, args[1])
        if operations is None:
            interfaces = topology.interfaces_of(node_name)
            self.reporter.error(
                "function.unknown-member",
                where / 1,
                f"{node_name} has no interface '{args[1]}'",
                did_you_mean(str(args[1]), interfaces),
            )
        elif args[2] not in operations:
            self.reporter.error(
                "function.unknown-member",
                where / 2,
                f"interface '{args[1]}' of {node_name} has no operation '{args[2]}'",
                did_you_mean(str(args[2]), operations),
            )

    def _get_artifact(self, args: Any, where: Where, context: FunctionContext) -> None:
        if not isinstance(args, list) or not 2 <= len(args) <= 4:
            self.reporter.error(
                "function.args",
                where,
                "get_artifact takes [entity, artifact, (location, (remove))]",
            )
            return
        if not self._entity_ok(args[0], where / 0, context, "get_artifact"):
            return
        topology = self.topology
        node_name = self._node_of(args[0], context) if isinstance(args[0], str) else None
        if topology is None or node_name is None or not isinstance(args[1], str):
            return
        artifacts = topology.artifacts_of(node_name)
        if args[1] not in artifacts:
            self.reporter.error(
                "function.unknown-member",
                where / 1,
                f"{node_name} has no artifact '{args[1]}'",
                did_you_mean(args[1], artifacts),
            )


def _is_runtime_attribute(name: str) -> bool:
    # attributes orchestrators set at run time whatever the type declares
    return name in {
        "tosca_id",
        "tosca_name",
        "state",
        "ip_address",
        "public_ip_address",
        "private_address",
        "public_address",
        "endpoint",
    }
