"""The use cases behind ``orch deploy / undeploy / run / plan``: validate, check inputs, snapshot,
lock, plan, run the engine, record the outcome. The CLI parses flags and renders; this module
decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.engine import interrupts
from orch.engine.events import Listener, ignore
from orch.engine.runner import Engine, EngineOptions, RunSummary
from orch.plan import Plan, cancel_plan, deploy_plan, undeploy_plan, workflow_plan
from orch.state import StateError, Store
from orch.tosca.diagnostics import Diagnostic, Location, Severity
from orch.tosca.inputs import GivenInputs, check_inputs, read_inputs, secret_inputs
from orch.tosca.model import Model, build_model
from orch.tosca.validator import ValidationResult, validate

SECRET_PLACEHOLDER = "<secret: not stored>"
"""Stored in place of a secret input the user gave."""
SECRET_DEFAULT = "<secret: the blueprint's default>"
"""Stored in place of a secret input left to its default (known again from the blueprint)."""
MISSING_INPUT = "inputs.missing"
INITIAL_STATE = "initial"
SECRET_MIN_LENGTH = 4
"""Shorter secret values are not searched for in outputs (they would match by chance); the
same as the executors' masking.MIN_SECRET_LENGTH."""
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
    given: GivenInputs = field(default_factory=GivenInputs)
    """What the user gave (-i): on an existing deployment, only these replace stored inputs."""
    missing: list[Diagnostic] = field(default_factory=list)
    """Inputs without a value, when prepared with ``missing_ok``."""


@dataclass
class Outcome:
    name: str
    summary: RunSummary
    outputs: dict[str, Any]
    status: str


# ---------------------------------------------------------------------------- preparing
def prepare(
    blueprint: str,
    input_specs: list[str],
    catalogs: Iterable[str] = (),
    *,
    missing_ok: bool = False,
) -> Prepared:
    """Validate the blueprint and its inputs; raise BlueprintProblems with every finding.

    With ``missing_ok``, inputs without a value are kept in ``Prepared.missing`` instead (an
    existing deployment has them stored: ``deploy`` decides)."""
    result = validate(blueprint, catalogs=catalogs)
    problems = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    if problems or result.registry is None or result.template is None:
        raise BlueprintProblems(result.diagnostics or problems)
    model = build_model(result.registry, result.template.data, result.entry)
    given = read_inputs(input_specs)
    inputs, diagnostics = check_inputs(result.registry, model.inputs, given)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    missing = [d for d in errors if d.rule == MISSING_INPUT] if missing_ok else []
    if len(errors) > len(missing):
        raise BlueprintProblems(diagnostics)
    return Prepared(result, model, inputs, secret_inputs(model.inputs), given, missing)


def deployment_name(prepared: Prepared, given: str | None) -> str:
    """The name a deployment is stored under: ``given`` (-n) exactly as written, else the
    blueprint's template_name, else its file (or folder, for generic file names). A name the
    rule refuses is an error, never rewritten: two names must never become one."""
    from orch.state.rows import NAME_RULE, check_name

    if given is not None:
        try:
            return check_name(given)
        except StateError as exc:
            raise DeploymentError(str(exc)) from None
    data = prepared.result.template.data if prepared.result.template else {}
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("template_name") if isinstance(metadata, dict) else None
    origin = "its metadata's template_name"
    if not isinstance(name, str) or not name:
        entry = Path(prepared.model.entry)
        generic = entry.stem.lower() in _GENERIC_NAMES
        name = entry.parent.name if generic else entry.stem
        origin = f"its {'folder' if generic else 'file'} name"
    try:
        return check_name(name)
    except StateError:
        raise DeploymentError(
            f"the blueprint's name {name!r} ({origin}) is not a valid deployment name: "
            f"{NAME_RULE}; give one with -n NAME"
        ) from None


def snapshot_files(store: Store | None, prepared: Prepared) -> None:
    """Copy every file the operations need into the store, so that later runs (resume,
    undeploy) use the files as deployed, not as they are on disk by then. Without a store,
    only their content hashes are set (to compare them: ``orch diff``). Only files inside the
    blueprint's root (or a catalog) are read: a type's implementation ``../../etc/shadow`` is
    refused here, whatever the validation saw."""
    from orch.tosca.imports import Confinement, read_blueprint_file

    model = prepared.model
    confinement = prepared.result.confinement or Confinement.of(Path(model.entry))
    missing: list[Diagnostic] = []
    for ref in model.files():
        try:
            data = read_blueprint_file(ref.path, confinement)
        except OSError as exc:
            missing.append(
                Diagnostic(
                    "deploy.artifact-missing",
                    Severity.ERROR,
                    f"cannot read '{ref.name}' ({ref.path}): {exc.strerror or exc}",
                    Location(model.entry),
                    "the file is named by an operation implementation or an artifact; "
                    "paths are relative to the file that names them",
                )
            )
            continue
        ref.sha = store.put_blob(data) if store is not None else hashlib.sha256(data).hexdigest()
    if missing:
        raise BlueprintProblems(missing)


def _stored_inputs(
    inputs: dict[str, Any], secrets: set[str], given: set[str]
) -> dict[str, Any]:
    """Inputs as stored: a secret is never stored, only whether it was given or defaulted."""
    return {
        name: (
            (SECRET_PLACEHOLDER if name in given else SECRET_DEFAULT) if name in secrets else value
        )
        for name, value in inputs.items()
    }


def _secret_values(inputs: dict[str, Any], secrets: set[str]) -> tuple[str, ...]:
    return tuple(str(inputs[n]) for n in secrets if n in inputs and inputs[n] not in (None, ""))


def _use_secrets(
    options: EngineOptions, inputs: dict[str, Any], secrets: set[str], name: str,
    listener: Listener,
) -> None:  # fmt: skip
    """The values executors mask; a secret too short to be masked is said (never shown)."""
    from orch.engine.events import Event
    from orch.executors.masking import short_secret_warnings

    options.secret_values = _secret_values(inputs, secrets)
    for warning in short_secret_warnings(inputs, secrets):
        listener(Event("message", name, message=f"warning: {warning}"))


def merged_inputs(prepared: Prepared, stored: dict[str, Any], name: str) -> dict[str, Any]:
    """The inputs a deployment goes on with: what is stored, with what the user gave now over
    it (and the new blueprint's defaults for inputs it adds). Inputs change only when the user
    changes them; secrets, never stored, must be given again when they were given at first."""
    from orch.tosca.context import Where
    from orch.tosca.loader import load_bytes

    definitions = prepared.model.inputs
    again = sorted(
        n for n, v in stored.items()
        if v == SECRET_PLACEHOLDER and n in definitions and n not in prepared.given.values
    )  # fmt: skip
    if again:
        flags = " ".join(f"-i {n}=..." for n in again)
        raise DeploymentError(
            f"deployment '{name}' was deployed with the secret input(s) {', '.join(again)}, "
            f"which are never stored: pass them again ({flags})"
        )
    kept = {
        n: v for n, v in stored.items()
        if n in definitions and n not in prepared.given.values
        and v not in (SECRET_PLACEHOLDER, SECRET_DEFAULT)
    }  # fmt: skip
    text = json.dumps(kept, ensure_ascii=False, indent=1, default=str)
    loaded = load_bytes(text.encode(), f"<inputs stored for deployment '{name}'>")
    merged = GivenInputs(
        values={**kept, **prepared.given.values},
        places={**{n: Where(loaded, (n,)) for n in kept}, **prepared.given.places},
    )
    inputs, diagnostics = check_inputs(prepared.result.registry, definitions, merged)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        raise BlueprintProblems(diagnostics)
    return inputs


def _old_inputs(stored: dict[str, Any], model: Model, given: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's inputs for running its own operations, secrets given again filled in."""
    values = {}
    for name, value in stored.items():
        if value == SECRET_PLACEHOLDER:
            value = given.get(name)
        elif value == SECRET_DEFAULT:
            definition = model.inputs.get(name) or {}
            value = given.get(name, definition.get("default"))
        values[name] = value
    return values


# ---------------------------------------------------------------------------- deploy
class Drifted(Exception):
    """A deployment differs from the blueprint and inputs given now: nothing ran."""

    def __init__(self, name: str, diff: Any):
        super().__init__(f"deployment '{name}' differs from this blueprint and its inputs")
        self.name = name
        self.diff = diff


def deploy(
    store: Store,
    prepared: Prepared,
    name: str,
    options: EngineOptions,
    listener: Listener = ignore,
    executors: list[Any] | None = None,
    *,
    update: bool = False,
    show_update: Any = None,
) -> Outcome:
    """Deploy, or resume a deploy. On an existing deployment whose blueprint or inputs changed,
    raise ``Drifted`` unless ``update``: then show the change (``show_update(diff)``), delete
    what it replaces or removes with the old snapshot, and deploy the new one."""

    def begin() -> _Run | Outcome:
        snapshot_files(store, prepared)
        existing = store.deployment(name)
        model_data = prepared.model.to_dict()
        given = set(prepared.given.values)
        inputs = prepared.inputs
        loaded = _executors(executors)  # the update's tear-down runs with the same ones
        if existing is None:
            if prepared.missing:
                raise BlueprintProblems(prepared.missing)
            store.create_deployment(name, prepared.model.entry, model_data,
                                    _stored_inputs(inputs, prepared.secrets, given))  # fmt: skip
        else:
            inputs = merged_inputs(prepared, existing.inputs, name)
            kept_given = given | {n for n, v in existing.inputs.items() if v == SECRET_PLACEHOLDER}
            difference = _difference(store, existing, prepared, inputs)
            if difference.drifted and not update:
                raise Drifted(name, difference)
            if difference.drifted:
                if show_update is not None:
                    show_update(difference)
                torn = _tear_down(store, name, existing, prepared, inputs, difference,
                                  options, listener, loaded)  # fmt: skip
                if torn is not None:
                    return torn
            _check_compatible(store, name, prepared.model)
            store.update_snapshot(name, prepared.model.entry, model_data,
                                  _stored_inputs(inputs, prepared.secrets, kept_given))  # fmt: skip
            if difference.drifted:
                from orch.plan.diff import rerun_steps

                again = rerun_steps(deploy_plan(prepared.model), difference.rerun)
                store.unmark_steps_done(name, "deploy", again)
        plan = deploy_plan(prepared.model)
        return _Run(prepared.model, inputs, prepared.secrets, plan, "deploy", end,
                    status="deploying", executors=loaded)  # fmt: skip

    def end(run: _Run, engine: Engine, summary: RunSummary) -> Outcome:
        outputs = public_outputs(run.model, engine.outputs(), run.inputs, run.secrets)
        store.set_outputs(name, outputs)
        status = {"ok": "deployed", "failed": "failed", "cancelled": "interrupted"}[summary.status]
        store.set_status(name, status)
        if summary.status == "ok":
            store.clear_done_steps(name, "undeploy")
        return Outcome(name, summary, outputs, status)

    return _locked_run(store, name, "deploy", begin, options, listener, executors)


def _difference(store: Store, existing: Any, prepared: Prepared, inputs: dict[str, Any]) -> Any:
    """What changed in what the deployment has done (see ``orch.plan.diff``)."""
    from orch.plan.diff import Deployed, compute

    old = Model.from_dict(existing.model)
    secrets = frozenset(prepared.secrets | secret_inputs(old.inputs))
    live = frozenset(  # created: a create that never succeeded made nothing to replace
        row.node for row in store.instances(existing.name)
        if row.state not in (INITIAL_STATE, "creating", "deleted")
    )  # fmt: skip
    done = frozenset(store.done_steps(existing.name, "deploy"))
    return compute(old, existing.inputs, prepared.model, inputs, secrets, Deployed(live, done))


def _tear_down(
    store: Store,
    name: str,
    existing: Any,
    prepared: Prepared,
    inputs: dict[str, Any],
    difference: Any,
    options: EngineOptions,
    listener: Listener,
    executors: list[Any],
) -> Outcome | None:
    """An update's first half: delete, with the snapshot they were deployed from, the instances
    that the new blueprint replaces or removes. None when done; else the failed outcome (the
    snapshot is unchanged, so the same update can be run again)."""
    from orch.plan.instances import make_instances

    old = Model.from_dict(existing.model)
    old_inputs = _old_inputs(existing.inputs, old, inputs)
    doomed_nodes = difference.replaced | difference.removed
    doomed = {iid for iid, i in make_instances(old).items() if i.node in doomed_nodes}
    states = {row.id: row.state for row in store.instances(name) if row.id in doomed}
    plan = undeploy_plan(old, states, running_jobs(store, name) & doomed)
    plan.kind = "teardown"
    secrets = prepared.secrets | secret_inputs(old.inputs)
    run = _Run(old, old_inputs, secrets, plan, "update", status="updating", cancel_jobs=False)
    _, summary = _run_engine(store, name, run, options, listener, executors)
    if summary.status != "ok":
        status = "failed" if summary.status == "failed" else "interrupted"
        store.set_status(name, status)
        return Outcome(name, summary, {}, status)
    store.clear_done_steps(name, "teardown")
    wanted = make_instances(prepared.model)
    stored = {row.id for row in store.instances(name)}
    store.forget_instances(
        name,
        reset={i for i in doomed if i in wanted},
        remove={i for i in stored if i not in wanted},
    )
    return None


SECRET_OUTPUT = "<secret: hidden>"


def public_outputs(
    model: Model, values: dict[str, Any], inputs: dict[str, Any], secrets: set[str]
) -> dict[str, Any]:
    """Outputs as they may be shown and stored: one that is marked sensitive, reads a secret
    input or holds a secret's value is replaced by SECRET_OUTPUT."""
    from orch.plan.diff import input_references

    hidden = [str(inputs[n]) for n in secrets if isinstance(inputs.get(n), (str, int, float))]
    hidden = [v for v in hidden if len(v) >= SECRET_MIN_LENGTH]
    shown: dict[str, Any] = {}
    for name, value in values.items():
        definition = model.outputs.get(name) or {}
        metadata = definition.get("metadata") if isinstance(definition, dict) else None
        sensitive = isinstance(metadata, dict) and str(metadata.get("sensitive")).lower() == "true"
        reads = input_references(definition.get("value")) & secrets
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if sensitive or reads or any(secret in text for secret in hidden):
            value = SECRET_OUTPUT
        shown[name] = value
    return shown


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


def difference(
    store: Store,
    name: str,
    blueprint: str | None,
    input_specs: list[str],
    catalogs: Iterable[str] = (),
) -> Any:
    """``orch diff``: what deploying ``blueprint`` (default: the file the deployment was
    deployed from, as it is now) with these inputs would change. Reads only."""
    existing = store.deployment(name)
    if existing is None:
        known = ", ".join(d.name for d in store.deployments()) or "none"
        raise DeploymentError(f"no deployment '{name}' in this state folder (deployments: {known})")
    path = blueprint or Model.from_dict(existing.model).entry
    if blueprint is None and not Path(path).exists():
        raise DeploymentError(
            f"the blueprint deployment '{name}' was deployed from, {path}, is gone: "
            f"give the blueprint to compare with (orch diff {name} BLUEPRINT)"
        )
    prepared = prepare(path, input_specs, catalogs, missing_ok=True)
    snapshot_files(None, prepared)
    inputs = merged_inputs(prepared, existing.inputs, name)
    return _difference(store, existing, prepared, inputs)


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
    given: dict[str, Any] = {}
    if input_specs:
        read = read_inputs(list(input_specs))
        if read.diagnostics:
            raise BlueprintProblems(read.diagnostics)
        given = read.values
    hidden = {SECRET_PLACEHOLDER, SECRET_DEFAULT}
    secrets = {n for n, v in deployment.inputs.items() if isinstance(v, str) and v in hidden}
    inputs = {**_old_inputs(deployment.inputs, model, given), **given}
    return model, inputs, secrets | set(secret_inputs(model.inputs))


def outputs_with_secrets(store: Store, name: str, input_specs: list[str]) -> dict[str, Any]:
    """``orch outputs --show-secrets``: the outputs evaluated again from the state, with the
    secret inputs they read given again (-i); nothing is stored."""
    from orch.engine.evaluate import stored_evaluator
    from orch.plan.diff import input_references
    from orch.plan.instances import make_instances

    model, inputs, secrets = stored(store, name, input_specs)
    read: set[str] = set()
    for definition in model.outputs.values():
        read |= input_references((definition or {}).get("value"))
    _require_secrets(name, inputs, secrets & read, model)
    evaluator = stored_evaluator(store, name, model, make_instances(model), inputs)
    return evaluator.outputs_of(model)


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
    def begin() -> _Run:
        model, inputs, secrets = stored(store, name, input_specs)
        _require_secrets(name, inputs, secrets, model)
        states = {row.id: row.state for row in store.instances(name)}
        plan = undeploy_plan(model, states, running_jobs(store, name))
        # the plan cancels the running jobs itself
        return _Run(model, inputs, secrets, plan, "undeploy", end, status="undeploying",
                    cancel_jobs=False)  # fmt: skip

    def end(_run: _Run, _engine: Engine, summary: RunSummary) -> Outcome:
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

    return _locked_run(store, name, "undeploy", begin, options, listener, executors)


def run_workflow(
    store: Store,
    name: str,
    workflow: str,
    options: EngineOptions,
    listener: Listener = ignore,
    input_specs: list[str] = (),  # type: ignore[assignment]
    executors: list[Any] | None = None,
) -> Outcome:
    def begin() -> _Run:
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
        deployment = store.deployment(name)
        before = deployment.status if deployment else "deployed"
        return _Run(model, inputs, secrets, plan, "run", end, workflow=workflow,
                    workflow_inputs=workflow_inputs, restore=before)  # fmt: skip

    def end(run: _Run, engine: Engine, summary: RunSummary) -> Outcome:
        outputs = public_outputs(run.model, engine.outputs(), run.inputs, run.secrets)
        if summary.status == "ok":
            store.clear_done_steps(name, run.plan.kind)
            store.set_outputs(name, outputs)
        deployment = store.deployment(name)
        return Outcome(name, summary, outputs, deployment.status if deployment else "")

    return _locked_run(store, name, f"run {workflow}", begin, options, listener, executors)


# ---------------------------------------------------------------------------- the skeleton
@dataclass
class _Run:
    """What deploy, undeploy, run (and an update's tear-down) run; the rest is the same for all
    of them (``_locked_run``)."""

    model: Model
    inputs: dict[str, Any]
    secrets: set[str]
    plan: Plan
    action: str
    """The run's action, as the store records it (deploy, undeploy, run, update)."""
    end: Callable[[_Run, Engine, RunSummary], Outcome] | None = None
    """What the run's outcome makes of the deployment (status, outputs...)."""
    status: str | None = None
    """The deployment's status while it runs (deploying...); None: unchanged."""
    workflow: str | None = None
    workflow_inputs: dict[str, Any] | None = None
    restore: str | None = None
    """The status to go back to if the run cannot even start (see ``_run``)."""
    cancel_jobs: bool = True
    """Cancel the jobs it leaves running when `orch cancel` (or Ctrl-C with --cancel-jobs)
    stopped it."""
    executors: list[Any] | None = None
    """The executors, when ``begin`` already needed them; else they are loaded to run it."""


def _locked_run(
    store: Store, name: str, lock_as: str, begin: Callable[[], _Run | Outcome],
    options: EngineOptions, listener: Listener, executors: list[Any] | None,
) -> Outcome:  # fmt: skip
    """deploy, undeploy and run: with the deployment locked and its state checked, ``begin()``
    says what to run (or already has the outcome), the engine runs it with the secrets masked
    and Ctrl-C / `orch cancel` handled, and the run's ``end`` records the outcome."""
    interrupts.install()  # before the lock shows our pid to `orch cancel`
    with store.lock(name, lock_as):
        store.check_health()
        run = begin()
        if isinstance(run, Outcome):
            return run
        chosen = run.executors if run.executors is not None else _executors(executors)
        engine, summary = _run_engine(store, name, run, options, listener, chosen)
        assert run.end is not None
        return run.end(run, engine, summary)


def _run_engine(
    store: Store, name: str, run: _Run, options: EngineOptions, listener: Listener,
    executors: list[Any],
) -> tuple[Engine, RunSummary]:  # fmt: skip
    """One engine run of ``run.plan``: the secrets it masks, the deployment's status while it
    runs, and the jobs to cancel if asked."""
    _use_secrets(options, run.inputs, run.secrets, name, listener)
    engine = Engine(store, name, run.model, run.inputs, executors, options, listener)
    summary = _run(store, name, run.status, lambda: engine.run(
        run.plan, action=run.action, workflow=run.workflow, workflow_inputs=run.workflow_inputs,
    ), restore=run.restore)  # fmt: skip
    if run.cancel_jobs:
        _cancel_if_asked(store, name, engine, listener)
    return engine, summary


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
    _use_secrets(options, inputs, secrets, name, listener)
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


def _run(
    store: Store, name: str, status: str | None, run: Any, restore: str | None = None
) -> RunSummary:
    """Run the engine with the deployment marked ``status`` (deploying, ...). Whatever stops it
    short (a plan that cannot start, a state error, Ctrl-C before the engine handles it) leaves
    it marked failed or interrupted (or ``restore``), never 'deploying' forever."""
    if status is not None:
        store.set_status(name, status)
    try:
        return run()
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        with contextlib.suppress(Exception):
            store.set_status(name, restore or ("interrupted" if interrupted else "failed"))
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
