"""The use cases behind ``orch deploy / undeploy / run / plan``: validate, check inputs, snapshot,
lock, plan, run the engine, record the outcome. The CLI parses flags and renders; this module
decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.engine import interrupts
from orch.engine.events import Listener, ignore
from orch.engine.runner import Engine, EngineOptions, RunSummary
from orch.plan import Plan, cancel_plan, deploy_plan, undeploy_plan, workflow_plan
from orch.state import Store
from orch.tosca.diagnostics import Diagnostic, Location, Severity
from orch.tosca.inputs import check_inputs, read_inputs, secret_inputs
from orch.tosca.model import Model, build_model
from orch.tosca.validator import ValidationResult, validate

SECRET_PLACEHOLDER = "<secret: not stored>"
_GENERIC_NAMES = {"blueprint", "service", "main", "topology", "template", "deployment"}


class BlueprintProblems(Exception):
    """The blueprint or the inputs have errors: nothing ran."""

    def __init__(self, diagnostics: list[Diagnostic], files: Iterable[str] = ()):
        super().__init__(f"{len(diagnostics)} problem(s)")
        self.diagnostics = diagnostics
        self.files = list(files)


class DeploymentError(Exception):
    """A request that cannot be carried out (unknown deployment, incompatible update...)."""


@dataclass
class Prepared:
    """A validated blueprint, its model and the inputs it will run with."""

    result: ValidationResult
    model: Model
    inputs: dict[str, Any]
    secrets: set[str] = field(default_factory=set)


@dataclass
class Outcome:
    name: str
    summary: RunSummary
    outputs: dict[str, Any]
    status: str


# ---------------------------------------------------------------------------- preparing
def prepare(blueprint: str, input_specs: list[str], catalogs: Iterable[str] = ()) -> Prepared:
    """Validate the blueprint and its inputs; raise BlueprintProblems with every finding."""
    result = validate(blueprint, catalogs=catalogs)
    problems = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    if problems or result.registry is None or result.template is None:
        raise BlueprintProblems(result.diagnostics or problems)
    model = build_model(result.registry, result.template.data, result.entry)
    given = read_inputs(input_specs)
    inputs, diagnostics = check_inputs(result.registry, model.inputs, given)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise BlueprintProblems(diagnostics)
    return Prepared(result, model, inputs, secret_inputs(model.inputs))


def default_name(prepared: Prepared) -> str:
    """The blueprint's template_name, else its file (or folder, for generic file names)."""
    data = prepared.result.template.data if prepared.result.template else {}
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("template_name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        entry = Path(prepared.model.entry)
        name = entry.parent.name if entry.stem.lower() in _GENERIC_NAMES else entry.stem
    return safe_name(name)


def safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "deployment"
    return cleaned[:100]


def snapshot_files(store: Store, model: Model) -> None:
    """Copy every file the operations need into the store, so that later runs (resume,
    undeploy) use the files as deployed, not as they are on disk by then."""
    missing: list[Diagnostic] = []
    for ref in model.files():
        try:
            data = Path(ref.path).read_bytes()
        except OSError as exc:
            missing.append(
                Diagnostic(
                    "deploy.artifact-missing",
                    Severity.ERROR,
                    f"cannot read '{ref.name}': {exc.strerror or exc}",
                    Location(model.entry),
                    "the file is named by an operation implementation or an artifact; "
                    "paths are relative to the file that names them",
                )
            )
            continue
        ref.sha = store.put_blob(data)
    if missing:
        raise BlueprintProblems(missing)


def _stored_inputs(prepared: Prepared) -> dict[str, Any]:
    return {
        name: (SECRET_PLACEHOLDER if name in prepared.secrets else value)
        for name, value in prepared.inputs.items()
    }


def _secret_values(inputs: dict[str, Any], secrets: set[str]) -> tuple[str, ...]:
    return tuple(str(inputs[n]) for n in secrets if n in inputs and inputs[n] not in (None, ""))


# ---------------------------------------------------------------------------- deploy
def deploy(
    store: Store,
    prepared: Prepared,
    name: str,
    options: EngineOptions,
    listener: Listener = ignore,
    executors: list[Any] | None = None,
) -> Outcome:
    interrupts.install()  # before the lock shows our pid to `orch cancel`
    with store.lock(name, "deploy"):
        snapshot_files(store, prepared.model)
        existing = store.deployment(name)
        model_data = prepared.model.to_dict()
        if existing is None:
            store.create_deployment(
                name, prepared.model.entry, model_data, _stored_inputs(prepared)
            )
        else:
            _check_compatible(store, name, prepared.model)
            store.update_snapshot(name, prepared.model.entry, model_data, _stored_inputs(prepared))
        plan = deploy_plan(prepared.model)
        store.set_status(name, "deploying")
        options.secret_values = _secret_values(prepared.inputs, prepared.secrets)
        engine = Engine(store, name, prepared.model, prepared.inputs, _executors(executors),
                        options, listener)  # fmt: skip
        summary = _run(store, name, lambda: engine.run(plan, action="deploy"))
        _cancel_if_asked(store, name, engine, listener)
        outputs = engine.outputs()
        store.set_outputs(name, outputs)
        status = {"ok": "deployed", "failed": "failed", "cancelled": "interrupted"}[summary.status]
        store.set_status(name, status)
        if summary.status == "ok":
            store.clear_done_steps(name, "undeploy")
        return Outcome(name, summary, outputs, status)


def _check_compatible(store: Store, name: str, model: Model) -> None:
    """A new blueprint for an existing deployment must still describe everything deployed."""
    from orch.plan.instances import make_instances

    wanted = make_instances(model)
    lost = [
        row.id
        for row in store.instances(name)
        if row.id not in wanted and row.state not in ("initial", "deleted")
    ]
    if lost:
        raise DeploymentError(
            f"deployment '{name}' has deployed instances this blueprint no longer describes: "
            f"{', '.join(sorted(lost))}; run `orch undeploy {name}` first, or deploy this "
            "blueprint under another --name"
        )


# ---------------------------------------------------------------------------- stored deployments
def stored(
    store: Store, name: str, input_specs: list[str] = ()
) -> tuple[Model, dict[str, Any], set[str]]:  # type: ignore[assignment]
    """A deployment's snapshot: its model and inputs, secrets given again with ``-i``."""
    deployment = store.deployment(name)
    if deployment is None:
        known = ", ".join(d.name for d in store.deployments()) or "none"
        raise DeploymentError(f"no deployment '{name}' in this state folder (deployments: {known})")
    model = Model.from_dict(deployment.model)
    inputs = dict(deployment.inputs)
    secrets = {n for n, v in inputs.items() if v == SECRET_PLACEHOLDER}
    if input_specs:
        given = read_inputs(list(input_specs))
        if given.diagnostics:
            raise BlueprintProblems(given.diagnostics)
        inputs.update(given.values)
    missing = sorted(n for n in secrets if inputs.get(n) == SECRET_PLACEHOLDER)
    for n in missing:
        inputs[n] = None
    return model, inputs, secrets | set(secret_inputs(model.inputs))


def _require_secrets(name: str, inputs: dict[str, Any], secrets: set[str], model: Model) -> None:
    missing = sorted(n for n in secrets if n in model.inputs and inputs.get(n) is None)
    if missing:
        flags = " ".join(f"-i {n}=..." for n in missing)
        raise DeploymentError(
            f"deployment '{name}' needs the secret input(s) {', '.join(missing)}, which are "
            f"never stored: pass them again ({flags})"
        )


def undeploy(
    store: Store,
    name: str,
    options: EngineOptions,
    listener: Listener = ignore,
    input_specs: list[str] = (),  # type: ignore[assignment]
    executors: list[Any] | None = None,
) -> Outcome:
    interrupts.install()  # before the lock shows our pid to `orch cancel`
    with store.lock(name, "undeploy"):
        model, inputs, secrets = stored(store, name, input_specs)
        _require_secrets(name, inputs, secrets, model)
        states = {row.id: row.state for row in store.instances(name)}
        plan = undeploy_plan(model, states, running_jobs(store, name))
        store.set_status(name, "undeploying")
        options.secret_values = _secret_values(inputs, secrets)
        engine = Engine(store, name, model, inputs, _executors(executors), options, listener)
        summary = _run(store, name, lambda: engine.run(plan, action="undeploy"))
        if summary.status == "ok":
            status = "undeployed"
            store.clear_done_steps(name, "deploy")
            store.clear_done_steps(name, "undeploy")
            store.reset_instances(name)
            store.set_outputs(name, {})
        else:
            status = "failed" if summary.status == "failed" else "interrupted"
        store.set_status(name, status)
        return Outcome(name, summary, {}, status)


def run_workflow(
    store: Store,
    name: str,
    workflow: str,
    options: EngineOptions,
    listener: Listener = ignore,
    input_specs: list[str] = (),  # type: ignore[assignment]
    executors: list[Any] | None = None,
) -> Outcome:
    interrupts.install()  # before the lock shows our pid to `orch cancel`
    with store.lock(name, f"run {workflow}"):
        model, inputs, secrets = stored(store, name)
        plan = workflow_plan(model, workflow)
        given = read_inputs(list(input_specs))
        if given.diagnostics:
            raise BlueprintProblems(given.diagnostics)
        # -i values of the blueprint's inputs (secrets given again); the rest are the workflow's
        workflow_inputs = {}
        for input_name, value in given.values.items():
            if input_name in model.inputs:
                inputs[input_name] = value
            else:
                workflow_inputs[input_name] = value
        _require_secrets(name, inputs, secrets, model)
        definitions = model.workflows.get(workflow, {}).get("inputs") or {}
        for input_name, definition in definitions.items():
            if input_name not in workflow_inputs and isinstance(definition, dict) and (
                "default" in definition
            ):
                workflow_inputs[input_name] = definition["default"]
        options.secret_values = _secret_values(inputs, secrets)
        engine = Engine(store, name, model, inputs, _executors(executors), options, listener)
        summary = engine.run(plan, action="run", workflow=workflow, workflow_inputs=workflow_inputs)
        _cancel_if_asked(store, name, engine, listener)
        if summary.status == "ok":
            store.clear_done_steps(name, plan.kind)
            store.set_outputs(name, engine.outputs())
        deployment = store.deployment(name)
        return Outcome(name, summary, engine.outputs(), deployment.status if deployment else "")


# ---------------------------------------------------------------------------- jobs
def running_jobs(store: Store, name: str) -> frozenset[str]:
    """Instances whose newest job is still running (as far as the store knows)."""
    return frozenset(job.instance for job in store.jobs(name, active=True))


def cancel_jobs(
    store: Store,
    name: str,
    options: EngineOptions,
    listener: Listener = ignore,
    input_specs: list[str] = (),  # type: ignore[assignment]
    executors: list[Any] | None = None,
) -> Outcome | None:
    """``orch cancel``: run the cancel operation of every running job; None when there is none.
    The caller holds the deployment's lock."""
    model, inputs, secrets = stored(store, name, input_specs)
    running = running_jobs(store, name)
    if not running:
        return None
    _require_secrets(name, inputs, secrets, model)
    options.secret_values = _secret_values(inputs, secrets)
    engine = Engine(store, name, model, inputs, _executors(executors), options, listener)
    summary = _cancel(store, name, engine, running)
    deployment = store.deployment(name)
    return Outcome(name, summary, {}, deployment.status if deployment else "")


def _cancel_if_asked(store: Store, name: str, engine: Engine, listener: Listener) -> None:
    """After a run stopped by `orch cancel` (or Ctrl-C with --cancel-jobs): cancel the jobs it
    leaves running, with the same options and executors."""
    running = running_jobs(store, name) if engine.jobs_to_cancel else frozenset()
    if running:
        fresh = Engine(store, name, engine.model, engine.inputs, engine.executors, engine.options,
                       listener)  # fmt: skip
        _cancel(store, name, fresh, running)


def _cancel(store: Store, name: str, engine: Engine, running: frozenset[str]) -> RunSummary:
    """One cancel run over the ``running`` jobs' instances (never resumed: a new one each time)."""
    plan = cancel_plan(engine.model, running)
    store.clear_done_steps(name, plan.kind)
    summary = engine.run(plan, action="cancel")
    store.clear_done_steps(name, plan.kind)
    return summary


def _run(store: Store, name: str, run: Any) -> RunSummary:
    """Run the engine; a plan that cannot start leaves the deployment marked failed, not
    'deploying' forever."""
    from orch.engine.runner import EngineError

    try:
        return run()
    except EngineError:
        store.set_status(name, "failed")
        raise


def plan_for(model: Model, action: str, workflow: str | None = None) -> Plan:
    """The plan ``orch plan`` shows: deploy, undeploy (as if everything were started), or a
    workflow."""
    if workflow:
        return workflow_plan(model, workflow)
    if action == "undeploy":
        from orch.plan.instances import make_instances

        return undeploy_plan(model, {i: "started" for i in make_instances(model)})
    return deploy_plan(model)


def _executors(executors: list[Any] | None) -> list[Any]:
    if executors is not None:
        return executors
    from orch.executors.registry import load_executors

    return load_executors()
