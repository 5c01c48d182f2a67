"""Property and attribute assignments against the definitions they assign.

Node templates, their capabilities, relationship templates, groups and policies all assign
properties the same way: unknown names, values against their types, required ones left out.
Apart because five sections share it, and it is the hottest check of a large template.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.functions import FunctionChecker, FunctionContext
from orch.tosca.types import TypeDef
from orch.tosca.values import ValueChecker


class AssignmentChecker:
    """Checks a map of assigned values against declared property or attribute definitions."""

    def __init__(
        self,
        values: ValueChecker,
        functions: FunctionChecker,
        reporter: Reporter,
        *,
        lenient: bool = False,
    ):
        self.values = values
        self.functions = functions
        self.reporter = reporter
        self.lenient = lenient  # the Alien4Cloud dialect: abstract nodes filled in later
        self._required_cache: dict[int, tuple[Any, list[str]]] = {}

    def check(
        self,
        values: Any,
        declared: dict[str, tuple[Any, TypeDef]],
        where: Where,
        context: FunctionContext,
        owner: str,
        *,
        required: bool,
        label: str,
        abstract: bool = False,
    ) -> None:
        if values is None:
            values = {}
        if not isinstance(values, dict):
            return  # grammar reports the shape
        section = "properties" if label == "property" else "attributes"
        schema_for = self.values.schema_for
        known_clean = self.values.known_clean
        for prop, value in values.items():
            extended = (
                label == "attribute"
                and type(value) is dict
                and "value" in value
                and set(value) <= {"value", "description"}
            )
            if extended:
                value = value["value"]  # TOSCA 1.3 extended attribute assignment
            found = declared.get(prop)
            if found is None:
                if label == "attribute":
                    self.functions.check_value(value, where / prop, context)
                    continue
                self.reporter.error(
                    f"topology.unknown-{label}",
                    where / prop,
                    f"unknown {label} '{prop}' for {owner}",
                    did_you_mean(str(prop), declared) or f"{owner} declares no {label}",
                    key=True,
                )
                continue
            schema = schema_for(found[0], found[1], section, prop)
            if schema is not None:
                if known_clean(value, schema, context):
                    continue  # the commonest assignments: nothing (new) to find
                where_value = where / prop / "value" if extended else where / prop
                self.values.check(value, schema, where_value, context)
            elif type(value) in (dict, list):
                self.functions.check_value(value, where / prop, context)
        if not required or abstract or self.lenient:
            return
        for prop in self._required(declared):
            if prop not in values:
                self.reporter.error(
                    f"topology.missing-{label}",
                    where,
                    f"missing required {label} '{prop}' of {owner}",
                    "set it here, or give it a default in the type",
                )

    def _required(self, declared: dict[str, tuple[Any, TypeDef]]) -> list[str]:
        """The required members without a default or value (cached per declaration)."""
        found = self._required_cache.get(id(declared))
        if found is None or found[0] is not declared:
            names = [
                prop
                for prop, (definition, _owner) in declared.items()
                if isinstance(definition, dict)
                and definition.get("required", True) is True
                and "default" not in definition
                and "value" not in definition
            ]
            found = (declared, names)  # holding the dict keeps its id unique
            self._required_cache[id(declared)] = found
        return found[1]
