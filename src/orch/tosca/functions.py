"""Static checks of TOSCA intrinsic functions wherever they are nested.

What can be known before deployment is checked: the input is declared, the node template exists,
the property, capability, requirement, interface, operation or artifact is declared by the types
involved, and the arguments have the right shape. Values themselves are runtime business.

Here: finding the calls, dispatching them, remembering the clean ones, and the functions that
name no template (get_input, concat, join, token, get_nodes_of_type, secrets). The calls that
name templates and their members are checked in ``orch.tosca.checks.references``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from orch.tosca.checks.index import UNKNOWN
from orch.tosca.checks.references import KEYWORDS, ReferenceChecker
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.values import FUNCTION_NAMES, ValueChecker, describe, is_function

if TYPE_CHECKING:
    from orch.tosca.checks.index import TopologyIndex

__all__ = ["KEYWORDS", "UNKNOWN", "FunctionChecker", "FunctionContext"]


class FunctionContext(NamedTuple):
    """Where a function is evaluated: which node or relationship template SELF is.

    (A named tuple, not a frozen dataclass: as immutable, and much cheaper to define at start-up.)
    """

    node: str | None = None  # node template name
    relationship: bool = False  # SOURCE/TARGET make sense
    in_outputs: bool = False


_NO_CONTEXT = FunctionContext()


class FunctionChecker:
    """Finds the function calls in values and checks each, once per kind of place."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.topology: TopologyIndex | None = None
        self.inputs: dict[str, Any] = {}
        self.references = ReferenceChecker(reporter)
        self._handlers = {
            name: getattr(self, "_" + name) for name in FUNCTION_NAMES if hasattr(self, "_" + name)
        }
        self._handlers.update(self.references.handlers())
        # Calls found clean, keyed by what their result depends on: templates repeat the same
        # calls (get_property [SELF, port]) thousands of times.
        self._clean: set[tuple[Any, ...]] = set()
        self._last_context: FunctionContext | None = None
        self._last_place: tuple[Any, ...] = ()

    def attach(self, topology: TopologyIndex, values: ValueChecker) -> None:
        """The topology whose templates the calls name (its checker calls this first)."""
        self.topology = topology
        self.references.topology = topology
        self.references.values = values

    def _clean_key(self, name: str, args: Any, context: FunctionContext) -> tuple[Any, ...] | None:
        if type(args) is str:
            return (name, args, context.relationship, context.in_outputs)
        if type(args) is not list:
            return None
        if name == "concat":
            return self._concat_key(args, context)
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

    def _concat_key(self, items: list[Any], context: FunctionContext) -> tuple[Any, ...] | None:
        """concat looks only at what kind each item is: a scalar item stands for any scalar
        (every node's ``concat: [ {get_input: prefix}, '-n7' ]`` shares one key), a nested
        call for its own key."""
        key: list[Any] = ["concat"]
        for item in items:
            if type(item) is dict:
                nested = self._call_key(item, context)
                if nested is None:
                    return None
                key.append(nested)
            elif type(item) is list:
                return None
            else:
                key.append(None)  # no call's key is None
        return tuple(key)

    def _call_key(self, call: dict[Any, Any], context: FunctionContext) -> tuple[Any, ...] | None:
        """The clean key of a call written as a map (None: it has none, or is no call)."""
        if len(call) != 1:
            return None
        for name, args in call.items():
            if name in self._handlers:
                return self._clean_key(name, args, context)
        return None

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

    def known_clean(self, call: dict[Any, Any], context: Any) -> bool:
        """Whether this call, in this kind of place, was already found clean."""
        key = self._call_key(call, context if type(context) is FunctionContext else _NO_CONTEXT)
        return key is not None and key in self._clean

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

    # ------------------------------------------------------------------ strings, others
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
            return
        from orch.sites.secrets import SecretError, field_of, normalise_path

        options = args[1:] if isinstance(args, list) else []
        try:  # what orch's secret store would refuse at run time, said now
            if isinstance(path, str):
                normalise_path(path)
            field_of([o for o in options if not is_function(o)])
        except SecretError as exc:
            message = str(exc) if str(exc).startswith("get_secret") else f"get_secret: {exc}"
            self.reporter.error(
                "function.args", where, message,
                "write get_secret: [ /secret/data/PATH, data=FIELD ]",
            )  # fmt: skip

    _get_vault_secret = _get_secret
