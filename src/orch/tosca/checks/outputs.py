"""Topology outputs: their definitions, and the values (functions, mostly) they yield.

Apart because outputs are read after deployment, where SELF means nothing: their functions are
checked in a place of their own.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.context import Where
from orch.tosca.definitions import DefinitionChecker
from orch.tosca.functions import FunctionChecker, FunctionContext
from orch.tosca.values import ValueChecker, is_function


class OutputChecker:
    """Checks one output definition and its value."""

    def __init__(
        self, values: ValueChecker, functions: FunctionChecker, definitions: DefinitionChecker
    ):
        self.values = values
        self.functions = functions
        self.definitions = definitions

    def check(self, definition: Any, where: Where) -> None:
        """An output's definition (if typed) and its value, in the outputs' place."""
        if not isinstance(definition, dict):
            return
        context = FunctionContext(in_outputs=True)
        value = definition.get("value")
        if "type" in definition:
            self.definitions.parameter_definition(
                {k: v for k, v in definition.items() if k != "value"}, where
            )
            schema = (
                self.values.schema_of(definition["type"], where)
                if self.values.resolves(definition["type"])
                else None
            )
            if schema is not None and value is not None:
                self.values.check(value, schema, where / "value", context)
                return
        if value is not None:
            if is_function(value):
                self.functions.check(value, where / "value", context)
            else:
                self.functions.check_value(value, where / "value", context)
