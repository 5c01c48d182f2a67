"""Typed values: primitives, scalar units, versions, ranges, collections, complex data types, and
constraint clauses.

A value is checked against a *schema*: the ``type``/``entry_schema``/``key_schema``/
``constraints`` of a property, attribute, input or parameter definition. Plain YAML scalars are
typed by the schema they meet (``version: 1.10`` is the version "1.10", not the float 1.1).
Function calls are left to ``functions.py``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.loader import MAX_INT_DIGITS, YamlFloat, scalar_text
from orch.tosca.types import TypeDef, TypeRegistry
from orch.units import SCALAR_KINDS, UnitError, to_base_unit

PRIMITIVES = frozenset(
    {
        "string",
        "integer",
        "float",
        "boolean",
        "timestamp",
        "null",
        "version",
        "range",
        "list",
        "map",
        "scalar-unit.size",
        "scalar-unit.time",
        "scalar-unit.frequency",
        "scalar-unit.bitrate",
        "any",
    }
)

_VERSION = re.compile(r"[0-9]+\.[0-9]+(?:\.[0-9]+(?:\.[A-Za-z0-9_]+(?:-[0-9]+)?)?)?\Z")
_LOOSE_VERSION = re.compile(r"[0-9]+(?:\.[0-9A-Za-z_]+)*(?:[-+][0-9A-Za-z_.-]+)?\Z")
_FLOAT_MAX = int(sys.float_info.max)
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?\Z"
)
UNBOUNDED = "UNBOUNDED"

CONSTRAINT_OPERATORS = (
    "equal",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "in_range",
    "valid_values",
    "length",
    "min_length",
    "max_length",
    "pattern",
    "schema",
)

FUNCTION_NAMES = frozenset(
    {
        "get_input",
        "get_property",
        "get_attribute",
        "get_operation_output",
        "get_nodes_of_type",
        "get_artifact",
        "concat",
        "join",
        "token",
        "get_secret",
        "get_input_nf",
        "get_vault_secret",
    }
)


_SCALARS = frozenset({str, int, bool, float, YamlFloat})
NOT_COMPILED = object()
_ABSENT = object()


def is_function(value: Any) -> bool:
    if type(value) is not dict or len(value) != 1:
        return False
    for key in value:
        return key in FUNCTION_NAMES
    return False


class Invalid(Exception):
    """A value does not fit its type; the message says why."""


# ------------------------------------------------------------------------------ primitives
def parse_scalar_unit(kind: str, value: Any) -> float:
    """Normalise "2 GiB" to its base unit (bytes, seconds, Hz, bits per second)."""
    if not isinstance(value, str):
        raise Invalid(f"expected a {kind} like '{_example(kind)}', got {_describe(value)}")
    try:
        return to_base_unit(kind, value)
    except UnitError as exc:
        raise Invalid(str(exc)) from None


def _example(kind: str) -> str:
    return {
        "scalar-unit.size": "4 GB",
        "scalar-unit.time": "30 s",
        "scalar-unit.frequency": "2 GHz",
        "scalar-unit.bitrate": "10 Mbps",
    }[kind]


def parse_version(value: Any, *, loose: bool = False) -> tuple[Any, ...]:
    text = scalar_text(value) if isinstance(value, (int, float, str)) else None
    if text is None or isinstance(value, bool):
        raise Invalid(f"expected a version like '1.2.0', got {_describe(value)}")
    pattern = _LOOSE_VERSION if loose else _VERSION
    if not pattern.match(text):
        raise Invalid(f"'{text}' is not a TOSCA version (major.minor[.fix[.qualifier[-build]]])")
    if len(text) > MAX_INT_DIGITS:  # int() of a longer part would raise
        raise Invalid(f"a version of {len(text):,} characters is too long")
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-]", text))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {scalar_text(value)}"
    if isinstance(value, str):
        return f"string '{value}'" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


def describe(value: Any) -> str:
    return _describe(value)


def coerce_primitive(kind: str, value: Any) -> Any:
    """The comparable form of ``value`` as ``kind``; raises Invalid when it does not fit."""
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            return scalar_text(value)  # a plain scalar typed by its TOSCA type
        raise Invalid(f"expected a string, got {_describe(value)}")
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid(f"expected an integer, got {_describe(value)}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > _FLOAT_MAX:  # float() would raise
                raise Invalid("the integer is too large for a float")
            return float(value)
        raise Invalid(f"expected a float, got {_describe(value)}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        hint = " (YAML 1.2: only true/false are booleans)" if isinstance(value, str) else ""
        raise Invalid(f"expected a boolean, got {_describe(value)}{hint}")
    if kind == "timestamp":
        if isinstance(value, str) and _TIMESTAMP.match(value):
            return value
        raise Invalid(
            f"expected an ISO 8601 timestamp like '2024-01-31T12:00:00Z', got {_describe(value)}"
        )
    if kind == "version":
        return parse_version(value)
    if kind == "null":
        if value is None:
            return None
        raise Invalid(f"expected null, got {_describe(value)}")
    if kind == "range":
        if not (isinstance(value, list) and len(value) == 2):
            raise Invalid(f"expected a range [lower, upper], got {_describe(value)}")
        lower, upper = value
        if not isinstance(lower, int) or isinstance(lower, bool):
            raise Invalid(f"range lower bound must be an integer, got {_describe(lower)}")
        if upper == UNBOUNDED:
            return (lower, math.inf)
        if not isinstance(upper, int) or isinstance(upper, bool):
            raise Invalid(
                f"range upper bound must be an integer or UNBOUNDED, got {_describe(upper)}"
            )
        if upper < lower:
            raise Invalid(f"range upper bound {upper} is below its lower bound {lower}")
        return (lower, upper)
    if kind in SCALAR_KINDS:
        return parse_scalar_unit(kind, value)
    if kind == "list":
        if isinstance(value, list):
            return value
        raise Invalid(f"expected a list, got {_describe(value)}")
    if kind == "map":
        if isinstance(value, dict):
            return value
        raise Invalid(f"expected a map, got {_describe(value)}")
    return value  # any


# ------------------------------------------------------------------------------ schemas
@dataclass(eq=False)
class Schema:
    """A compiled value schema: the primitive at the root of its type and what to check."""

    type_name: str
    primitive: str | None  # None for complex data types
    datatype: TypeDef | None
    constraints: tuple[tuple[str, Any, Where], ...]
    entry: Schema | None = None
    key: Schema | None = None
    # a complex type's fields (compiled on first use) and the names of the required ones
    fields: dict[str, Schema | None] | None = None
    required: tuple[str, ...] = ()
    prepared: list[tuple[str, Any, Any]] | None = None  # constraints, operands typed once


class ValueChecker:
    """Checks values against schemas; compiles each definition once."""

    def __init__(
        self,
        registry: TypeRegistry,
        reporter: Reporter,
        check_function: Callable[[Any, Where, Any], None],
    ):
        self.registry = registry
        self.reporter = reporter
        self.check_function = check_function
        # id(definition) -> (definition, schema); holding the definition keeps its id unique
        self._compiled: dict[Any, tuple[Any, Schema | None]] = {}
        self.require_fields = True  # off in the Alien4Cloud dialect, which fills them in later
        self._datatype_chain: dict[int, tuple[str | None, tuple[tuple[str, Any, Where], ...]]] = {}
        self._clean: set[tuple[Any, ...]] = set()
        # the function checker's own cache, when there is one: (call, context) -> found clean
        self.function_clean: Callable[[Any, Any], bool] | None = None

    # ---------------------------------------------------------------- compile
    def schema_of(self, definition: Any, where: Where | Callable[[], Where]) -> Schema | None:
        """Compile a property/parameter definition (or a bare type name), once.

        ``where`` may be a function: it is only needed the first time a definition is seen.
        """
        key = definition if isinstance(definition, str) else id(definition)
        found = self._compiled.get(key)
        if found is not None:
            return found[1]
        schema = self._compile(definition, where if isinstance(where, Where) else where())
        self._compiled[key] = (definition, schema)
        return schema

    def schema_for(self, definition: Any, owner: TypeDef, section: str, name: str) -> Schema | None:
        """``schema_of`` a member of a type, where its place is only built on first sight."""
        found = self._compiled.get(definition if isinstance(definition, str) else id(definition))
        if found is not None:
            return found[1]
        return self.schema_of(definition, owner.where / section / name)

    def cached_schema(self, definition: Any) -> Any:
        """The schema compiled for ``definition`` (None: it has none), or NOT_COMPILED."""
        found = self._compiled.get(definition if isinstance(definition, str) else id(definition))
        return NOT_COMPILED if found is None else found[1]

    def _compile(self, definition: Any, where: Where) -> Schema | None:
        if isinstance(definition, str):
            definition, where = {"type": definition}, where
        if not isinstance(definition, dict):
            return None
        type_name = definition.get("type")
        if type_name is None:
            return None
        if not isinstance(type_name, str):
            return None
        primitive, datatype, inherited = self._resolve_type(type_name)
        if primitive is None and datatype is None:
            return None  # unknown type: reported by the definition checker
        constraints = list(inherited)
        for clause, at in constraint_clauses(definition.get("constraints"), where / "constraints"):
            if isinstance(clause, dict) and len(clause) == 1:
                ((op, operand),) = clause.items()
                constraints.append((op, operand, at / op))
        entry = key = None
        if "entry_schema" in definition:
            entry = self._compile(
                _as_definition(definition["entry_schema"]), where / "entry_schema"
            )
        if "key_schema" in definition:
            key = self._compile(_as_definition(definition["key_schema"]), where / "key_schema")
        if datatype is not None and entry is None and primitive in ("list", "map"):
            entry_def = self._inherited_entry(datatype)
            if entry_def is not None:
                entry = self._compile(_as_definition(entry_def[0]), entry_def[1])
        return Schema(type_name, primitive, datatype, tuple(constraints), entry, key)

    def _inherited_entry(self, datatype: TypeDef) -> tuple[Any, Where] | None:
        for owner in self.registry.ancestry(datatype):
            if "entry_schema" in owner.body:
                return owner.body["entry_schema"], owner.where / "entry_schema"
        return None

    def _resolve_type(self, type_name: str) -> tuple[str | None, TypeDef | None, tuple]:
        if type_name in PRIMITIVES:
            return type_name, None, ()
        datatype = self.registry.get("data_types", type_name)
        if datatype is None:
            return None, None, ()
        cached = self._datatype_chain.get(id(datatype))
        if cached is None:
            primitive: str | None = None
            constraints: list[tuple[str, Any, Where]] = []
            for owner in self.registry.ancestry(datatype):
                for clause, at in constraint_clauses(
                    owner.body.get("constraints"), owner.where / "constraints"
                ):
                    if isinstance(clause, dict) and len(clause) == 1:
                        ((op, operand),) = clause.items()
                        constraints.append((op, operand, at / op))
                parent = owner.parent_name
                if parent in PRIMITIVES:
                    primitive = parent
                    break
            cached = (primitive, tuple(constraints))
            self._datatype_chain[id(datatype)] = cached
        return cached[0], datatype, cached[1]

    def resolves(self, type_name: Any) -> bool:
        return isinstance(type_name, str) and (
            type_name in PRIMITIVES or self.registry.get("data_types", type_name) is not None
        )

    # ---------------------------------------------------------------- check
    def known_clean(self, value: Any, schema: Schema, context: Any) -> bool:
        """Whether ``value`` was already found clean against ``schema`` (or needs no look):
        callers skip building the value's place for the commonest values."""
        kind = type(value)
        if kind is str:
            if schema.primitive == "string" and not schema.constraints:
                return True
            return (schema, str, value) in self._clean
        if kind is dict:
            return self.function_clean is not None and self.function_clean(value, context)
        if kind in _SCALARS:
            return (schema, kind, value.text if kind is YamlFloat else value) in self._clean
        return False

    def check(self, value: Any, schema: Schema, where: Where, context: Any = None) -> None:
        primitive = schema.primitive
        kind = type(value)
        if kind is dict:
            if len(value) == 1 and is_function(value):
                self.check_function(value, where, context)
                return
        elif kind in _SCALARS:
            if kind is str and primitive == "string" and not schema.constraints:
                return  # the most common value of all: nothing more to know
            # a scalar found clean against a schema stays clean: templates repeat values
            key = (schema, kind, value.text if kind is YamlFloat else value)
            if key in self._clean:
                return
            before = self.reporter.findings
            self._check(value, schema, where, context, primitive)
            if self.reporter.findings == before:
                self._clean.add(key)
            return
        self._check(value, schema, where, context, primitive)

    def _check(
        self, value: Any, schema: Schema, where: Where, context: Any, primitive: str | None
    ) -> None:
        try:
            if primitive is not None:
                normal = coerce_primitive(primitive, value)
            else:
                normal = value
                self._check_complex(value, schema, where, context)
        except Invalid as exc:
            self.reporter.error("value.type", where, f"{exc} for type {schema.type_name}")
            return
        if schema.constraints:
            prepared = schema.prepared
            if prepared is None:
                prepared = self._prepare(schema)
            for op, bound, operand in prepared:
                if not _holds(op, bound, normal, value):
                    self.reporter.error(
                        "value.constraint",
                        where,
                        f"{_describe(value)} violates constraint {op}: {_show(operand)}",
                        _constraint_hint(op, operand),
                    )
        known_clean = self.known_clean
        if primitive == "list" and schema.entry is not None:
            entry = schema.entry
            for i, item in enumerate(value):
                if not known_clean(item, entry, context):
                    self.check(item, entry, where / i, context)
        elif primitive == "map":
            for k, item in value.items():
                if schema.key is not None and not known_clean(k, schema.key, context):
                    self.check(k, schema.key, where / k, context)
                if schema.entry is not None and not known_clean(item, schema.entry, context):
                    self.check(item, schema.entry, where / k, context)

    def _check_complex(self, value: Any, schema: Schema, where: Where, context: Any) -> None:
        datatype = schema.datatype
        assert datatype is not None
        if not isinstance(value, dict):
            raise Invalid(
                f"expected a map of the fields of {datatype.name}, got {_describe(value)}"
            )
        fields = schema.fields
        if fields is None:
            fields = self._fields(schema, datatype)
        for name, item in value.items():
            sub = fields.get(name, _ABSENT)
            if sub is _ABSENT:
                self.reporter.unknown(
                    "value.unknown-field",
                    where / name,
                    f"unknown field '{name}' for data type {datatype.name}",
                    name,
                    fields,
                )
            elif sub is not None and not self.known_clean(item, sub, context):
                self.check(item, sub, where / name, context)
        if not self.require_fields:
            return
        for name in schema.required:
            if name not in value:
                self.reporter.error(
                    "value.missing-field",
                    where,
                    f"missing required field '{name}' of data type {datatype.name}",
                    f"{datatype.name} needs: " + ", ".join(schema.required),
                )

    def _fields(self, schema: Schema, datatype: TypeDef) -> dict[str, Schema | None]:
        """Compile a complex type's fields once: name -> schema, and which are required."""
        fields: dict[str, Schema | None] = {}
        required = []
        for name, (definition, owner) in self.registry.members(datatype, "properties").items():
            fields[name] = self.schema_of(definition, owner.where / "properties" / name)
            if (
                isinstance(definition, dict)
                and definition.get("required", True) is True
                and "default" not in definition
            ):
                required.append(name)
        schema.fields = fields
        schema.required = tuple(required)
        return fields

    def _prepare(self, schema: Schema) -> list[tuple[str, Any, Any]]:
        """A schema's constraints with their operands typed once: (operator, bound, operand).

        Operands that are functions, or that do not fit the type (reported where the
        constraint is defined), are left out."""
        prepared = []
        for op, operand, _where in schema.constraints:
            if is_function(operand):
                continue
            try:
                bound = self._bound(op, operand, schema)
            except (Invalid, re.error):
                continue
            prepared.append((op, bound, operand))
        schema.prepared = prepared
        return prepared

    def _bound(self, op: str, operand: Any, schema: Schema) -> Any:
        if op in ("equal", "greater_than", "greater_or_equal", "less_than", "less_or_equal"):
            return self._operand(operand, schema)
        if op == "in_range":
            if not isinstance(operand, list) or len(operand) != 2:
                raise Invalid(op)
            low = self._operand(operand[0], schema)
            high = math.inf if operand[1] == UNBOUNDED else self._operand(operand[1], schema)
            return (low, high)
        if op == "valid_values":
            if not isinstance(operand, list):
                raise Invalid(op)
            choices = []
            for choice in operand:
                try:
                    choices.append(self._operand(choice, schema))
                except Invalid:
                    continue
            return choices
        if op in ("length", "min_length", "max_length"):
            if not isinstance(operand, int) or isinstance(operand, bool):
                raise Invalid(op)
            return operand
        if op == "pattern":
            if not isinstance(operand, str):
                raise Invalid(op)
            return re.compile(operand)
        return None  # schema: not checked statically

    def _operand(self, operand: Any, schema: Schema) -> Any:
        primitive = schema.primitive
        if primitive in (None, "list", "map", "range") or primitive not in PRIMITIVES:
            return operand
        if (
            primitive in SCALAR_KINDS
            and isinstance(operand, (int, float))
            and not isinstance(operand, bool)
        ):
            return float(operand)  # a bare number bound is in the base unit (bytes, seconds, ...)
        return coerce_primitive(primitive, operand)

    # ---------------------------------------------------------------- definitions
    def check_constraint_clause(self, clause: Any, where: Where, schema: Schema | None) -> None:
        """A constraint as written in a definition: a known operator with a fitting operand."""
        if not isinstance(clause, dict) or len(clause) != 1:
            self.reporter.error(
                "constraint.shape",
                where,
                "a constraint is a map with one operator",
                "valid operators: " + ", ".join(CONSTRAINT_OPERATORS),
            )
            return
        ((op, operand),) = clause.items()
        if op not in CONSTRAINT_OPERATORS:
            self.reporter.unknown(
                "constraint.unknown",
                where / op,
                f"unknown constraint operator '{op}'",
                op,
                CONSTRAINT_OPERATORS,
            )
            return
        if is_function(operand) or schema is None:
            return
        try:
            if op == "in_range":
                if not isinstance(operand, list) or len(operand) != 2:
                    raise Invalid("in_range takes a list of two values [min, max]")
                for bound in operand:
                    if bound != UNBOUNDED:
                        self._operand(bound, schema)
            elif op == "valid_values":
                if not isinstance(operand, list):
                    raise Invalid("valid_values takes a list")
                for choice in operand:
                    self._operand(choice, schema)
            elif op in ("length", "min_length", "max_length"):
                if not isinstance(operand, int) or isinstance(operand, bool) or operand < 0:
                    raise Invalid(f"{op} takes a non-negative integer")
            elif op == "pattern":
                if not isinstance(operand, str):
                    raise Invalid("pattern takes a regular expression string")
                re.compile(operand)
            elif op != "schema":
                self._operand(operand, schema)
        except Invalid as exc:
            self.reporter.error("constraint.operand", where / op, f"bad operand for {op}: {exc}")
        except re.error as exc:
            self.reporter.error("constraint.operand", where / op, f"invalid pattern: {exc}")


def constraint_clauses(raw: Any, where: Where) -> list[tuple[Any, Where]]:
    """The clauses of a ``constraints`` keyname and where each is written.

    TOSCA writes a list of clauses; a single clause written as a map is read as a list of one
    (Puccini does; the definition checker warns, since tosca-parser and xOpera refuse it).
    """
    if isinstance(raw, list):
        return [(clause, where / i) for i, clause in enumerate(raw)]
    if isinstance(raw, dict) and len(raw) == 1:
        return [(raw, where)]
    return []


def _holds(op: str, bound: Any, normal: Any, value: Any) -> bool:
    """Whether a value meets a prepared constraint; values of the wrong kind for the operator
    (a bad constraint, reported where it is defined) pass."""
    try:
        if op == "equal":
            return bool(normal == bound)
        if op == "greater_than":
            return bool(normal > bound)
        if op == "greater_or_equal":
            return bool(normal >= bound)
        if op == "less_than":
            return bool(normal < bound)
        if op == "less_or_equal":
            return bool(normal <= bound)
        if op == "in_range":
            return bool(bound[0] <= normal <= bound[1])
        if op == "valid_values":
            return normal in bound
        if op in ("length", "min_length", "max_length"):
            if not hasattr(value, "__len__"):
                return True
            size = len(value)
            return (
                size == bound
                if op == "length"
                else (size >= bound if op == "min_length" else size <= bound)
            )
        if op == "pattern":
            return not isinstance(normal, str) or bound.fullmatch(normal) is not None
    except TypeError:
        return True
    return True  # schema: not checked statically


def _constraint_hint(op: str, operand: Any) -> str:
    if op == "valid_values" and isinstance(operand, list):
        return "valid: " + ", ".join(_show(o) for o in operand)
    if op == "pattern":
        return f"the whole value must match the regular expression {operand}"
    return f"the {op.replace('_', ' ')} constraint is declared with the type or property"


def _as_definition(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def _show(operand: Any) -> str:
    if isinstance(operand, list):
        return "[" + ", ".join(_show(o) for o in operand) + "]"
    if isinstance(operand, YamlFloat):
        return operand.text
    return str(operand)
