"""Before a plan starts: each operation still to run has an executor that will run it, and each
execution environment not bound yet gets its site. Every problem is said at once, and nothing
has run then (``EngineError``)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from orch.engine.environments import (
    SITE_ATTRIBUTE,
    UnboundEnvironment,
    choose_site,
    is_environment,
    site_attributes,
    unknown_environments,
)
from orch.engine.evaluate import EvaluationError, Evaluator, Scope
from orch.engine.runs import EngineError, operation_of
from orch.executors.base import Executor, Preflighted
from orch.plan.steps import Plan, Step
from orch.tosca.model import FileRef, Model


def check(
    plan: Plan, model: Model, evaluator: Evaluator, executors: list[Executor],
    done: Container[str], environment_sites: dict[str, str],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The environments bound now (instance -> the attributes to store when it first moves);
    ``EngineError`` with every problem found."""
    problems, bindings = bind_environments(plan, model, evaluator, environment_sites)
    for step in plan.operations():
        if step.id in done:
            continue
        operation = operation_of(model, step)
        if operation is None or operation.implementation is None:
            continue
        executor = executor_for(executors, operation.implementation)
        refusal = _refusal(model, evaluator, executor, step) if executor is not None else None
        if refusal:
            problems.append(f"{step.instance} {step.interface}.{step.operation}: {refusal}")
        if executor is None:
            supported = "; ".join(f"{e.name}: {getattr(e, 'kinds', '?')}" for e in executors)
            problems.append(
                f"{step.instance} {step.interface}.{step.operation}: no executor runs "
                f"'{operation.implementation.name}' (executors: {supported})"
            )
    if problems:
        raise EngineError("; ".join(problems))
    return bindings


def executor_for(executors: list[Executor], implementation: FileRef) -> Executor | None:
    """The first executor that accepts the implementation."""
    for executor in executors:
        if executor.accepts(implementation.name, implementation.type):
            return executor
    return None


def bind_environments(
    plan: Plan, model: Model, evaluator: Evaluator, environment_sites: dict[str, str]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Each execution environment not bound yet gets its site now, before anything runs
    (its attributes are stored when its instance first moves)."""
    problems = unknown_environments(model, environment_sites)
    bindings: dict[str, dict[str, Any]] = {}
    for instance in plan.instances.values():
        node = model.nodes[instance.node]
        if not is_environment(node):
            continue
        if SITE_ATTRIBUTE in evaluator.attributes.get(instance.id, {}):
            continue
        try:
            site = choose_site(node.name, environment_sites)
            bindings[instance.id] = site_attributes(site)
        except UnboundEnvironment as exc:
            problems.append(str(exc))
    return problems, bindings


def _refusal(model: Model, evaluator: Evaluator, executor: Executor, step: Step) -> str | None:
    """Why an executor that can tell before running (``unsupported``) will refuse the
    node (a DLS type or DAG orch does not serve), None when it will not."""
    if not isinstance(executor, Preflighted):
        return None
    node = model.nodes[step.node]
    try:
        properties = evaluator.value(node.properties, Scope(instance=step.instance))
    except EvaluationError:
        properties = {}  # known only at run time: the operation says it then
    result = executor.unsupported(node.types, properties if isinstance(properties, dict) else {})
    return str(result) if result else None
