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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.loader import YamlFloat, scalar_text
from orch.tosca.types import TypeDef, TypeRegistry

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

# Units and their factor to the base unit (spec 3.3.6). Size, time and frequency units are
# matched case-insensitively; bitrate distinguishes bits (b) from bytes (B).
_UNITS: dict[str, dict[str, float]] = {
    "scalar-unit.size": {
        "b": 1,
        "kb": 1e3,
        "kib": 1024,
        "mb": 1e6,
        "mib": 1024**2,
        "gb": 1e9,
        "gib": 1024**3,
        "tb": 1e12,
        "tib": 1024**4,
    },
    "scalar-unit.time": {
        "d": 86400,
        "h": 3600,
        "m": 60,
        "s": 1,
        "ms": 1e-3,
        "us": 1e-6,
        "ns": 1e-9,
    },
    "scalar-unit.frequency": {"hz": 1, "khz": 1e3, "mhz": 1e6, "ghz": 1e9},
    "scalar-unit.bitrate": {
        "bps": 1,
        "Kbps": 1e3,
        "Kibps": 1024,
        "Mbps": 1e6,
        "Mibps": 1024**2,
        "Gbps": 1e9,
        "Gibps": 1024**3,
        "Tbps": 1e12,
        "Tibps": 1024**4,
        "Bps": 8,
        "KBps": 8e3,
        "KiBps": 8 * 1024,
        "MBps": 8e6,
        "MiBps": 8 * 1024**2,
        "GBps": 8e9,
        "GiBps": 8 * 1024**3,
        "TBps": 8e12,
        "TiBps": 8 * 1024**4,
    },
}
_UNIT_NAMES = {
    "scalar-unit.size": "B, kB, KiB, MB, MiB, GB, GiB, TB, TiB",
    "scalar-unit.time": "d, h, m, s, ms, us, ns",
    "scalar-unit.frequency": "Hz, kHz, MHz, GHz",
    "scalar-unit.bitrate": "bps, Kbps, Kibps, Mbps, Mibps, Gbps, Gibps, Tbps, Tibps "
    "(Bps... for bytes)",
}
_SCALAR = re.compile(
    r"\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*\Z"
)
_VERSION = re.compile(r"[0-9]+\.[0-9]+(?:\.[0-9]+(?:\.[A-Za-z0-9_]+(?:-[0-9]+)?)?)?\Z")
_LOOSE_VERSION = re.compile(r"[0-9]+(?:\.[0-9A-Za-z_]+)*(?:[-+][0-9A-Za-z_.-]+)?\Z")
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
    match = _SCALAR.match(value)
    if not match:
        raise Invalid(f"'{value}' is not a {kind} (a number, a space, a unit)")
    number, unit = match.groups()
    units = _UNITS[kind]
    if kind == "scalar-unit.bitrate":
        factor = units.get(unit)
        if factor is None:
            lowered = {k.lower(): v for k, v in units.items() if k[0] != "B" and "B" not in k}
            factor = lowered.get(unit.lower()) if "B" not in unit else None
    else:
        factor = units.get(unit.lower())
    if factor is None:
        raise Invalid(f"unknown unit '{unit}' for {kind}; valid: {_UNIT_NAMES[kind]}")
    return float(number) * factor


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
    if kind in _UNITS:
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
        raw = definition.get("constraints")
        if isinstance(raw, list):
            for i, clause in enumerate(raw):
                if isinstance(clause, dict) and len(clause) == 1:
                    ((op, operand),) = clause.items()
                    constraints.append((op, operand, where / "constraints" / i / op))
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
                raw = owner.body.get("constraints")
                if isinstance(raw, list):
                    for i, clause in enumerate(raw):
                        if isinstance(clause, dict) and len(clause) == 1:
                            ((op, operand),) = clause.items()
                            constraints.append((op, operand, owner.where / "constraints" / i / op))
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
    def check(self, value: Any, schema: Schema, where: Where, context: Any = None) -> None:
        primitive = schema.primitive
        kind = type(value)
        if kind is dict:
            if len(value) == 1 and is_function(value):
                self.check_function(value, where, context)
                return
        elif kind is str and primitive == "string" and not schema.constraints:
            return  # the most common value of all: nothing more to know
        try:
            if primitive is not None:
                normal = coerce_primitive(primitive, value)
            else:
                normal = value
                self._check_complex(value, schema, where, context)
        except Invalid as exc:
            self.reporter.error("value.type", where, f"{exc} for type {schema.type_name}")
            return
        for op, operand, cwhere in schema.constraints:
            self._check_constraint(op, operand, cwhere, normal, value, schema, where)
        if primitive == "list" and schema.entry is not None:
            for i, item in enumerate(value):
                self.check(item, schema.entry, where / i, context)
        elif primitive == "map":
            for k, item in value.items():
                if schema.key is not None:
                    self.check(k, schema.key, where / k, context)
                if schema.entry is not None:
                    self.check(item, schema.entry, where / k, context)

    def _check_complex(self, value: Any, schema: Schema, where: Where, context: Any) -> None:
        datatype = schema.datatype
        assert datatype is not None
        if not isinstance(value, dict):
            raise Invalid(
                f"expected a map of the fields of {datatype.name}, got {_describe(value)}"
            )
        fields = self.registry.members(datatype, "properties")
        for name, item in value.items():
            found = fields.get(name)
            if found is None:
                self.reporter.unknown(
                    "value.unknown-field",
                    where / name,
                    f"unknown field '{name}' for data type {datatype.name}",
                    name,
                    fields,
                )
                continue
            definition, owner = found
            sub = self.schema_of(definition, lambda o=owner, n=name: o.where / "properties" / n)
            if sub is not None:
                self.check(item, sub, where / name, context)
        if not self.require_fields:
            return
        for name, (definition, _owner) in fields.items():
            if name in value or not isinstance(definition, dict):
                continue
            if definition.get("required", True) is True and "default" not in definition:
                self.reporter.error(
                    "value.missing-field",
                    where,
                    f"missing required field '{name}' of data type {datatype.name}",
                )

    def _check_constraint(
        self,
        op: str,
        operand: Any,
        cwhere: Where,
        normal: Any,
        value: Any,
        schema: Schema,
        where: Where,
    ) -> None:
        if is_function(operand):
            return
        try:
            ok = self._evaluate(op, operand, normal, value, schema)
        except Invalid:
            return  # a bad operand is reported once, where the constraint is defined
        if not ok:
            self.reporter.error(
                "value.constraint",
                where,
                f"{_describe(value)} violates constraint {op}: {_show(operand)}",
            )

    def _operand(self, operand: Any, schema: Schema) -> Any:
        primitive = schema.primitive
        if primitive in (None, "list", "map", "range") or primitive not in PRIMITIVES:
            return operand
        if (
            primitive in _UNITS
            and isinstance(operand, (int, float))
            and not isinstance(operand, bool)
        ):
            return float(operand)  # a bare number bound is in the base unit (bytes, seconds, ...)
        return coerce_primitive(primitive, operand)

    def _evaluate(self, op: str, operand: Any, normal: Any, value: Any, schema: Schema) -> bool:
        if op == "equal":
            return normal == self._operand(operand, schema)
        if op in ("greater_than", "greater_or_equal", "less_than", "less_or_equal"):
            bound = self._operand(operand, schema)
            try:
                return {
                    "greater_than": normal > bound,
                    "greater_or_equal": normal >= bound,
                    "less_than": normal < bound,
                    "less_or_equal": normal <= bound,
                }[op]
            except TypeError:
                raise Invalid(op) from None
        if op == "in_range":
            if not isinstance(operand, list) or len(operand) != 2:
                raise Invalid(op)
            low = self._operand(operand[0], schema)
            high = math.inf if operand[1] == UNBOUNDED else self._operand(operand[1], schema)
            try:
                return low <= normal <= high
            except TypeError:
                raise Invalid(op) from None
        if op == "valid_values":
            if not isinstance(operand, list):
                raise Invalid(op)
            choices = []
            for choice in operand:
                try:
                    choices.append(self._operand(choice, schema))
                except Invalid:
                    continue
            return normal in choices
        if op in ("length", "min_length", "max_length"):
            if not isinstance(operand, int) or not hasattr(value, "__len__"):
                raise Invalid(op)
            size = len(value)
            return {
                "length": size == operand,
                "min_length": size >= operand,
                "max_length": size <= operand,
            }[op]
        if op == "pattern":
            if not isinstance(operand, str) or not isinstance(normal, str):
                raise Invalid(op)
            try:
                return re.fullmatch(operand, normal) is not None
            except re.error:
                raise Invalid(op) from None
        return True  # schema: not checked statically

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


def _as_definition(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def _show(operand: Any) -> str:
    if isinstance(operand, list):
        return "[" + ", ".join(_show(o) for o in operand) + "]"
    if isinstance(operand, YamlFloat):
        return operand.text
    return str(operand)
