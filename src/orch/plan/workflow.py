"""Imperative workflows declared in a blueprint, as step graphs.

Each workflow step runs its activities in order on every instance of its target (or on every
relationship of ``target_relationship``); ``on_success`` steps wait for all instances of the
step; ``on_failure`` steps run only when it failed. ``delegate`` expands to the node's normative
deploy or undeploy chain, ``inline`` to another workflow's graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orch.plan.instances import links, make_instances
from orch.plan.lifecycle import (
    DEPLOY_STAGES,
    JOB_PHASES,
    RUN_WORKFLOW,
    UNDEPLOY_STAGES,
    has_link_operation,
    has_operation,
    jobs_plan,
)
from orch.plan.steps import Instance, Link, Plan, Step
from orch.tosca.model import Model


class WorkflowError(Exception):
    """The workflow cannot be planned (unknown name, inline cycle)."""


@dataclass
class _Fragment:
    entries: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)


def workflow_plan(model: Model, name: str) -> Plan:
    if name == RUN_WORKFLOW and name not in model.workflows and has_jobs(model):
        return jobs_plan(model)
    if name not in model.workflows:
        known = sorted(model.workflows)
        if has_jobs(model):
            known.append(f"{RUN_WORKFLOW} (orch's: runs the jobs)")
        raise WorkflowError(
            f"no workflow '{name}' in the blueprint; declared: {', '.join(known) or 'none'}"
        )
    instances = make_instances(model)
    builder = _Builder(model, instances, links(model, instances))
    builder.workflow(name, prefix="", chain=())
    return Plan(f"run:{name}", instances, builder.steps)


def has_jobs(model: Model) -> bool:
    return any(node.is_job for node in model.nodes.values())


def _job_phase(interface: str, operation: str) -> str | None:
    if interface.rsplit(".", 1)[-1] == "Runnable" and operation in ("submit", "run", "cancel"):
        return operation
    return None


class _Builder:
    def __init__(self, model: Model, instances: dict[str, Instance], all_links: list[Link]):
        self.model = model
        self.instances = instances
        self.by_node: dict[str, list[Instance]] = {}
        for instance in instances.values():
            self.by_node.setdefault(instance.node, []).append(instance)
        self.links = all_links
        self.steps: dict[str, Step] = {}

    def workflow(self, name: str, prefix: str, chain: tuple[str, ...]) -> _Fragment:
        if name in chain:
            raise WorkflowError("inline workflows form a cycle: " + " -> ".join((*chain, name)))
        definition = self.model.workflows.get(name)
        if not isinstance(definition, dict):
            raise WorkflowError(f"no workflow '{name}' to inline")
        raw_steps = definition.get("steps") or {}
        fragments: dict[str, _Fragment] = {}
        successors: dict[str, list[str]] = {s: [] for s in raw_steps}
        failure_successors: dict[str, list[str]] = {s: [] for s in raw_steps}
        for step_name, body in raw_steps.items():
            body = body if isinstance(body, dict) else {}
            successors[step_name] = [s for s in _names(body.get("on_success")) if s in raw_steps]
            failure_successors[step_name] = [
                s for s in _names(body.get("on_failure")) if s in raw_steps
            ]
        for step_name in _order(raw_steps, successors, failure_successors):
            body = raw_steps[step_name] if isinstance(raw_steps[step_name], dict) else {}
            fragments[step_name] = self._step(
                f"{prefix}{step_name}", body, (*chain, name), step_name
            )
        has_predecessor: set[str] = set()
        for step_name in raw_steps:
            for successor in successors[step_name]:
                has_predecessor.add(successor)
                for entry in fragments[successor].entries:
                    self.steps[entry].deps.extend(fragments[step_name].exits)
            for successor in failure_successors[step_name]:
                has_predecessor.add(successor)
                for entry in fragments[successor].entries:
                    self.steps[entry].on_failure_of.extend(fragments[step_name].exits)
        fragment = _Fragment()
        for step_name in raw_steps:
            if step_name not in has_predecessor:
                fragment.entries.extend(fragments[step_name].entries)
            if not successors[step_name]:
                fragment.exits.extend(fragments[step_name].exits)
        return fragment

    def _step(
        self, step_id: str, body: dict[str, Any], chain: tuple[str, ...], label: str
    ) -> _Fragment:
        activities = body.get("activities") or []
        target = body.get("target")
        relationship = body.get("target_relationship")
        fragment = _Fragment()
        for instance in self.by_node.get(str(target), []):
            first: list[str] | None = None
            last: list[str] = []
            for index, activity in enumerate(activities):
                sub = self._activity(
                    f"{step_id}@{instance.id}#{index}", activity, instance, relationship, chain
                )
                for entry in sub.entries:
                    self.steps[entry].deps.extend(last)
                    self.steps[entry].label = label
                if first is None:
                    first = sub.entries
                if sub.exits:
                    last = sub.exits
            fragment.entries.extend(first or [])
            fragment.exits.extend(last)
        return fragment

    def _activity(
        self,
        step_id: str,
        activity: Any,
        instance: Instance,
        relationship: Any,
        chain: tuple[str, ...],
    ) -> _Fragment:
        if not isinstance(activity, dict) or len(activity) != 1:
            return _Fragment()
        ((kind, value),) = activity.items()
        if kind == "set_state":
            return self._add(
                Step(step_id, "state", instance.node, instance.id, state_after=str(value))
            )
        if kind == "call_operation":
            operation = value.get("operation") if isinstance(value, dict) else value
            interface, _, op_name = str(operation).rpartition(".")
            if relationship:
                return self._link_operations(step_id, instance, str(relationship), op_name)
            phase = _job_phase(interface, op_name)
            if not has_operation(self.model, instance.node, interface, op_name):
                # nothing to run (e.g. the run of a transfer its submit did): the job's state
                # still moves as the workflow says, and the plan says what was called
                return self._add(Step(
                    step_id, "state", instance.node, instance.id, interface, op_name,
                    state_after=dict((p, a) for p, _, a in JOB_PHASES).get(phase or ""),
                ))  # fmt: skip
            return self._add(
                Step(
                    step_id,
                    "operation",
                    instance.node,
                    instance.id,
                    interface,
                    op_name,
                    job=phase,  # type: ignore[arg-type]
                    state_before=dict((p, b) for p, b, _ in JOB_PHASES).get(phase or ""),
                    state_after=dict((p, a) for p, _, a in JOB_PHASES).get(phase or ""),
                )
            )
        if kind == "delegate":
            workflow = value.get("workflow") if isinstance(value, dict) else value
            stages = UNDEPLOY_STAGES if workflow == "undeploy" else DEPLOY_STAGES
            fragment = _Fragment()
            previous: list[str] = []
            for op_name, before, after in stages:
                runs = has_operation(self.model, instance.node, "Standard", op_name)
                step = Step(
                    f"{step_id}.{op_name}",
                    "operation" if runs else "state",
                    instance.node,
                    instance.id,
                    "Standard" if runs else None,
                    op_name if runs else None,
                    state_before=before if runs else None,
                    state_after=after,
                    deps=list(previous),
                )
                self.steps[step.id] = step
                fragment.entries = fragment.entries or [step.id]
                previous = [step.id]
            fragment.exits = previous
            return fragment
        if kind == "inline":
            workflow = value.get("workflow") if isinstance(value, dict) else value
            return self.workflow(str(workflow), f"{step_id}/", chain)
        return _Fragment()

    def _link_operations(
        self, step_id: str, instance: Instance, requirement: str, op_name: str
    ) -> _Fragment:
        node = self.model.nodes[instance.node]
        fragment = _Fragment()
        for link in self.links:
            if link.source != instance.id:
                continue
            if node.requirements[link.requirement].name != requirement:
                continue
            if not has_link_operation(self.model, link, op_name):
                continue
            side = "target" if op_name.endswith("_target") or op_name == "add_source" else "source"
            runs_on = link.target if side == "target" else link.source
            step = Step(
                f"{step_id}>{link.target}",
                "operation",
                runs_on.rsplit("/", 1)[0],
                runs_on,
                "Configure",
                op_name,
                link=Link(link.source, link.target, link.requirement, side),  # type: ignore[arg-type]
            )
            self._add(step, fragment)
        return fragment

    def _add(self, step: Step, fragment: _Fragment | None = None) -> _Fragment:
        self.steps[step.id] = step
        fragment = fragment if fragment is not None else _Fragment()
        fragment.entries.append(step.id)
        fragment.exits.append(step.id)
        return fragment


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _order(
    raw_steps: dict[str, Any],
    successors: dict[str, list[str]],
    failure_successors: dict[str, list[str]],
) -> list[str]:
    """Step names, each after its predecessors, so that the plan's order is an execution order."""
    from graphlib import CycleError, TopologicalSorter

    sorter: TopologicalSorter[str] = TopologicalSorter({s: () for s in raw_steps})
    for name in raw_steps:
        for successor in (*successors[name], *failure_successors[name]):
            sorter.add(successor, name)
    try:
        return list(sorter.static_order())
    except CycleError as exc:
        raise WorkflowError("workflow steps form a cycle: " + " -> ".join(exc.args[1])) from exc
