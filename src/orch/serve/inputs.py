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


def definitions_for(store: Store, deployment: str, workflow: str) -> tuple[dict, dict, set[str]]:
    """(the workflow's input definitions, the deployment's, the names of secret inputs)."""
    model, _inputs, secrets = stored(store, deployment)
    spec = model.workflows.get(workflow) or {}
    declared = spec.get("inputs") if isinstance(spec, dict) else None
    own = declared if isinstance(declared, dict) else {}
    return own, model.inputs, secrets | secret_inputs(own)


def problems(store: Store, deployment: str, workflow: str, values: dict[str, Any]) -> dict:
    """``{input name: [problem, ...]}``; empty when the inputs may run. Only primitive types
    and constraints are checked here (a data type of the blueprint's is left to the run)."""
    own, blueprint, _secrets = definitions_for(store, deployment, workflow)
    registry = TypeRegistry(Reporter())
    found: dict[str, list[str]] = {}
    for name, value in values.items():
        definition = own.get(name, blueprint.get(name))
        if definition is None:
            known = ", ".join(sorted({*own, *blueprint})) or "none"
            found[name] = [f"workflow '{workflow}' has no input '{name}' (inputs: {known})"]
            continue
        _values, diagnostics = check_inputs(registry, {name: definition}, _given(name, value))
        errors = [d.message for d in diagnostics if d.severity is Severity.ERROR]
        if errors:
            found[name] = errors
    missing = {n: d for n, d in own.items() if n not in values}
    _values, diagnostics = check_inputs(registry, missing, GivenInputs())
    for diagnostic in diagnostics:
        if diagnostic.severity is Severity.ERROR:
            name = next((n for n in missing if f"'{n}'" in diagnostic.message), "inputs")
            found.setdefault(name, []).append(diagnostic.message)
    return found


def secret_names(store: Store, deployment: str, workflow: str) -> set[str]:
    return definitions_for(store, deployment, workflow)[2]
