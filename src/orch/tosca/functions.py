"""Static checks of TOSCA intrinsic functions wherever they are nested.

What can be known before deployment is checked: the input is declared, the node template exists,
the property, capability, requirement, interface, operation or artifact is declared by the types
involved, and the arguments have the right shape. Values themselves are runtime business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.values import FUNCTION_NAMES, describe, is_function

if TYPE_CHECKING:
    from orch.tosca.topology import TopologyChecker

KEYWORDS = ("SELF", "SOURCE", "TARGET", "HOST", "REQ_TARGET")


@dataclass(frozen=True, slots=True)
class FunctionContext:
    """Where a function is evaluated: which node or relationship template SELF is."""

    node: str | None = None  # node template name
    relationship: bool = False  # SOURCE/TARGET make sense
    in_outputs: bool = False


class FunctionChecker:
    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.topology: TopologyChecker | None = None
        self.inputs: dict[str, Any] = {}
        self._handlers = {
            name: getattr(self, "_" + name) for name in FUNCTION_NAMES if hasattr(self, "_" + name)
        }
        # Calls found clean, keyed by what their result depends on: templates repeat the same
        # calls (get_property [SELF, port]) thousands of times.
        self._clean: set[tuple[Any, ...]] = set()
        self._last_context: FunctionContext | None = None
        self._last_place: tuple[Any, ...] = ()

    def _clean_key(self, name: str, args: Any, context: FunctionContext) -> tuple[Any, ...] | None:
        if type(args) is str:
            return (name, args, context.relationship, context.in_outputs)
        if type(args) is not list:
            return None
        for arg in args:
            if type(arg) is not str:
                return None
        if args and args[0] in KEYWORDS and context.node:
            if args[0] == "HOST":  # whether a node has a host is the template's business
                return (name, tuple(args), context.node, context.relationship)
            return (name, tuple(args), self._place(context))
        return (
            name,
            tuple(args),
            None,
            context.relationship,
            context.in_outputs,
            context.node is None,
        )

    def _place(self, context: FunctionContext) -> tuple[Any, ...]:
        """What SELF-relative calls depend on: the node's type and the kind of place. The calls
        of one node come one after the other: the last answer is kept."""
        if context is self._last_context:
            return self._last_place
        topology = self.topology
        node_type = topology.node_type_of(context.node) if topology and context.node else None
        place = (id(node_type), context.relationship, context.in_outputs)
        self._last_context, self._last_place = context, place
        return place

    def known_clean(self, call: Any, context: Any) -> bool:
        """Whether this call, in this kind of place, was already found clean."""
        if len(call) != 1:
            return False
        for name, args in call.items():
            if name not in self._handlers:
                return False
            key = self._clean_key(
                name, args, context if type(context) is FunctionContext else _NO_CONTEXT
            )
            return key is not None and key in self._clean
        return False

    def check_value(self, value: Any, where: Where, context: Any) -> None:
        """Find and check every function call inside ``value``."""
        if type(value) is dict:
            if len(value) == 1 and is_function(value):
                self.check(value, where, context)
                return
            for key, item in value.items():
                if type(item) in (dict, list):
                    self.check_value(item, where / key, context)
        elif type(value) is list:
            for i, item in enumerate(value):
                if type(item) in (dict, list):
                    self.check_value(item, where / i, context)

    def check(self, call: dict[str, Any], where: Where, context: Any) -> None:
        ((name, args),) = call.items()
        if type(context) is not FunctionContext:
            context = _NO_CONTEXT
        handler = self._handlers.get(name)
        key = None
        if handler is not None:
            key = self._clean_key(name, args, context)
            if key is not None and key in self._clean:
                return  # the same call in the same kind of place was already found clean
        at = where / name
        before = self.reporter.findings
        if handler is not None:
            handler(args, at, context)
        if name != "get_input":  # (get_input looks into a nested call itself)
            if type(args) is list:
                for i, arg in enumerate(args):
                    if type(arg) is dict and self.known_clean(arg, context):
                        continue
                    if type(arg) in (dict, list):
                        self.check_value(arg, at / i, context)
            elif type(args) is dict:
                self.check_value(args, at, context)
        if key is not None and self.reporter.findings == before:
            self._clean.add(key)  # the call and the calls nested in it

    # ------------------------------------------------------------------ get_input
    def _get_input(self, args: Any, where: Where, context: FunctionContext) -> None:
        name = args[0] if isinstance(args, list) and args else args
        if is_function(name):
            self.check(name, where / 0 if isinstance(args, list) else where, context)
            return
        if not isinstance(name, str):
            self.reporter.error(
                "function.args", where, f"get_input takes an input name, got {describe(name)}"
            )
            return
        if name not in self.inputs:
            self.reporter.error(
                "function.unknown-input",
                where,
                f"get_input of undeclared input '{name}'",
                did_you_mean(name, self.inputs) or "declare it under topology_template.inputs",
            )

    def _get_input_nf(self, args: Any, where: Where, context: FunctionContext) -> None:
        # Yorc: like get_input, but yields nothing instead of failing when the input is unset
        name = args[0] if isinstance(args, list) and args else args
        if not isinstance(name, str):
            self.reporter.error(
                "function.args", where, f"get_input_nf takes an input name, got {describe(name)}"
            )

    # ------------------------------------------------------------------ get_property/attribute
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
        if topology is None:
            return
        values = topology.values
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

    # ------------------------------------------------------------------ others
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

    def _concat(self, args: Any, where: Where, context: FunctionContext) -> None:
        if not isinstance(args, list) or not args:
            self.reporter.error(
                "function.args",
                where,
                "concat takes a list of one or more strings"
                + ("" if isinstance(args, list) else f", got {describe(args)}"),
                "write concat: [ 'a', { get_input: b }, ... ]",
            )
            return
        self._string_items(args, where, "concat")

    def _string_items(self, items: list[Any], where: Where, fname: str) -> None:
        """Each item must turn into text: a scalar, or a function call that yields one."""
        for i, item in enumerate(items):
            if type(item) is list or (type(item) is dict and not is_function(item)):
                self.reporter.error(
                    "function.args",
                    where / i,
                    f"{fname} joins strings; item {i} is {describe(item)}",
                    "use a string, a number or a function call such as { get_input: name }"
                    if type(item) is list or len(item) != 1
                    else f"'{next(iter(item))}' is not a function; functions: "
                    + ", ".join(sorted(FUNCTION_NAMES)),
                )

    def _join(self, args: Any, where: Where, context: FunctionContext) -> None:
        ok = (
            isinstance(args, list)
            and 1 <= len(args) <= 2
            and (isinstance(args[0], list) or is_function(args[0]))
        )
        if ok and len(args) == 2:
            ok = isinstance(args[1], str)
        if not ok:
            self.reporter.error(
                "function.args",
                where,
                "join takes [[values...], (delimiter string)]",
                "write join: [ [ a, { get_input: b } ], ',' ]",
            )
        elif isinstance(args[0], list):
            self._string_items(args[0], where / 0, "join")

    def _token(self, args: Any, where: Where, context: FunctionContext) -> None:
        if not isinstance(args, list) or len(args) != 3:
            self.reporter.error(
                "function.args",
                where,
                "token takes [string, separator characters, index]"
                + (f", got {len(args)} argument(s)" if isinstance(args, list) else ""),
                "write token: [ { get_attribute: [ SELF, name ] }, ':', 1 ]",
            )
            return
        text, separators, index = args
        problems = (
            (0, not isinstance(text, (str, int, float)) and not is_function(text), "a string"),
            (1, not isinstance(separators, str) or not separators, "separator characters"),
            (2, type(index) is not int or index < 0, "a non-negative integer index"),
        )
        for i, bad, wanted in problems:
            if bad:
                self.reporter.error(
                    "function.args",
                    where / i,
                    f"token argument {i + 1} must be {wanted}, got {describe(args[i])}",
                    "token takes [string, separator characters, index]",
                )

    def _get_nodes_of_type(self, args: Any, where: Where, context: FunctionContext) -> None:
        topology = self.topology
        if not isinstance(args, str):
            self.reporter.error("function.args", where, "get_nodes_of_type takes a node type name")
        elif topology is not None:
            topology.registry.require("node_types", args, where)

    def _get_secret(self, args: Any, where: Where, context: FunctionContext) -> None:
        path = args[0] if isinstance(args, list) and args else args
        if not isinstance(path, str) and not is_function(path):
            self.reporter.error(
                "function.args", where, "get_secret takes a secret path (and options)"
            )

    _get_vault_secret = _get_secret


_NO_CONTEXT = FunctionContext()
UNKNOWN = object()  # a value that is only known at run time


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
