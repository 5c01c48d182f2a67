"""A request's inputs, checked before anything runs, as ``orch deploy`` checks ``-i`` values
(``orch.tosca.inputs.check_inputs``): each against the workflow's input definitions, or the
deployment's own inputs (which ``orch run -i`` may also set). One problem list per field."""

from __future__ import annotations

import json
from typing import Any

from orch.deployments import stored
from orch.state import Store
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import Severity
from orch.tosca.inputs import GivenInputs, check_inputs, secret_inputs
from orch.tosca.loader import load_bytes
from orch.tosca.types import TypeRegistry


def _given(name: str, value: Any) -> GivenInputs:
    loaded = load_bytes(json.dumps({name: value}).encode(), f"<input {name}>")
    return GivenInputs(values={name: value}, places={name: Where(loaded, (name,))})


def definitions_for(
    store: Store, deployment: str, workflow: str
) -> tuple[dict, dict, set[str], str]:
    """(the workflow's input definitions, the deployment's, the names of secret inputs, the
    workflow's description)."""
    model, _inputs, secrets = stored(store, deployment)
    spec = model.workflows.get(workflow) or {}
    declared = spec.get("inputs") if isinstance(spec, dict) else None
    own = declared if isinstance(declared, dict) else {}
    described = spec.get("description") if isinstance(spec, dict) else None
    return own, model.inputs, secrets | secret_inputs(own), str(described or "")


def _coerced(definition: Any, value: Any) -> Any:
    """hpcwaas-api clients send every input as a string: one for an input that is not a
    string is read as YAML, as ``orch run -i name=value`` reads it (``"5"`` is 5)."""
    kind = definition.get("type", "string") if isinstance(definition, dict) else "string"
    if not isinstance(value, str) or kind == "string":
        return value
    try:
        loaded = load_bytes(f"v: {value}\n".encode(), "<input>").data
    except Exception:  # not YAML: the check says what is wrong with it as it is
        return value
    return loaded.get("v", value) if isinstance(loaded, dict) else value


def check(
    store: Store, deployment: str, workflow: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]], set[str]]:
    """(the inputs to run with, ``{input name: [problem, ...]}``, the secret inputs' names).
    The inputs may run when there is no problem. Only primitive types and constraints are
    checked here (a data type of the blueprint's is left to the run); a secret's value is
    never quoted in a problem."""
    own, blueprint, secrets, _about = definitions_for(store, deployment, workflow)
    registry = TypeRegistry(Reporter())
    found: dict[str, list[str]] = {}
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        definition = own.get(name, blueprint.get(name))
        if definition is None:
            known = ", ".join(sorted({*own, *blueprint})) or "none"
            found[name] = [f"workflow '{workflow}' has no input '{name}' (inputs: {known})"]
            continue
        coerced[name] = value = _coerced(definition, value)
        _values, diagnostics = check_inputs(registry, {name: definition}, _given(name, value))
        errors = [d.message for d in diagnostics if d.severity is Severity.ERROR]
        if name in secrets:
            shown = {str(value), json.dumps(value), str(values[name])} - {""}
            errors = [_masked(e, shown) for e in errors]
        if errors:
            found[name] = errors
    missing = {n: d for n, d in own.items() if n not in values}
    _values, diagnostics = check_inputs(registry, missing, GivenInputs())
    for diagnostic in diagnostics:
        if diagnostic.severity is Severity.ERROR:
            name = next((n for n in missing if f"'{n}'" in diagnostic.message), "inputs")
            found.setdefault(name, []).append(diagnostic.message)
    return coerced, found, secrets


def _masked(text: str, values: set[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "<secret: hidden>")
    return text
