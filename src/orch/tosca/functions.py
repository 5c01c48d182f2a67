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

    def _clean_key(self, name: str, args: Any, context: FunctionContext) -> tuple[Any, ...] | None:
        if type(args) is str:
            return (name, args, context.relationship, context.in_outputs)
        if type(args) is not list or not all(type(a) is str for a in args):
            return None
        node_type = None
        if args and args[0] in KEYWORDS and self.topology is not None and context.node:
            node_type = id(self.topology.node_type_of(context.node))
        return (
            name,
            tuple(args),
            node_type,
            context.relationship,
            context.in_outputs,
            context.node is None,
        )

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
        at = where / name
        if type(context) is not FunctionContext:
            context = _NO_CONTEXT
        handler = self._handlers.get(name)
        if handler is not None:
            key = self._clean_key(name, args, context)
            if key is not None and key in self._clean:
                return  # the same call in the same kind of place was already found clean
            before = len(self.reporter.diagnostics)
            handler(args, at, context)
            if key is not None and len(self.reporter.diagnostics) == before:
                self._clean.add(key)
                return
        if name == "get_input":
            return
        if type(args) is list:
            for i, arg in enumerate(args):
                if type(arg) in (dict, list):
                    self.check_value(arg, at / i, context)
        elif type(args) is dict:
            self.check_value(args, at, context)

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
        topology = self.topology
        if topology is None or not all(isinstance(a, str) for a in args[1:2]):
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
        if not isinstance(args, list):
            self.reporter.error("function.args", where, "concat takes a list of values")

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
                "function.args", where, "join takes [[values...], (delimiter string)]"
            )

    def _token(self, args: Any, where: Where, context: FunctionContext) -> None:
        ok = (
            isinstance(args, list)
            and len(args) == 3
            and isinstance(args[1], str)
            and (isinstance(args[2], int) and not isinstance(args[2], bool))
        )
        if not ok:
            self.reporter.error(
                "function.args", where, "token takes [string, separator characters, index]"
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
