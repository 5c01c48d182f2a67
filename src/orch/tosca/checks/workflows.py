"""Workflows: steps, their targets and links, and the activities they run.

A step targets a node template, group or relationship; its links name other steps; a
call_operation names an operation the target's interfaces have; an inline names a workflow.
Apart because workflows come after the templates and only refer to them by name.
"""

from __future__ import annotations

from typing import Any

from orch.tosca.checks.index import TopologyIndex
from orch.tosca.context import Reporter, Where
from orch.tosca.diagnostics import did_you_mean
from orch.tosca.states import JOB_STATES, NODE_STATES


class WorkflowChecker:
    """Checks one imperative workflow against the topology."""

    def __init__(self, index: TopologyIndex, reporter: Reporter):
        self.index = index
        self.reporter = reporter

    def check(
        self, name: str, workflow: dict[str, Any], where: Where, workflows: dict[str, Any]
    ) -> None:
        """A workflow's steps: targets, links, activities (``workflows``: all, for inline)."""
        steps = workflow.get("steps")
        if not isinstance(steps, dict):
            return
        for step_name, step in steps.items():
            if not isinstance(step, dict):
                continue
            at = where / "steps" / step_name
            target = step.get("target")
            if (
                isinstance(target, str)
                and target not in self.index.nodes
                and target not in self.index.groups
                and target not in self.index.relationships
            ):
                self.reporter.error(
                    "workflow.unknown-target",
                    at / "target",
                    f"step '{step_name}' targets unknown node or group '{target}'",
                    did_you_mean(target, [*self.index.nodes, *self.index.groups]),
                )
                target = None
            for key in ("on_success", "on_failure", "precedingSteps", "onSuccess", "onFailure"):
                refs = step.get(key)
                refs = [refs] if isinstance(refs, str) else refs
                if isinstance(refs, list):
                    for i, ref in enumerate(refs):
                        if not isinstance(ref, str) or ref not in steps:
                            self.reporter.error(
                                "workflow.unknown-step",
                                at / key / i if isinstance(step.get(key), list) else at / key,
                                f"step '{step_name}' {key} refers to unknown step '{ref}'",
                                did_you_mean(str(ref), steps),
                            )
            if step.get("target_relationship") is not None:
                target = None  # operations of a relationship, not of the node
            activities = step.get("activities")
            if isinstance(activities, list):
                for i, activity in enumerate(activities):
                    self._activity(activity, at / "activities" / i, target, workflows)
            elif isinstance(step.get("activity"), dict):
                self._activity(step["activity"], at / "activity", target, workflows)

    def _activity(
        self, activity: Any, where: Where, target: str | None, workflows: dict[str, Any]
    ) -> None:
        if not isinstance(activity, dict) or len(activity) != 1:
            return
        ((kind, value),) = activity.items()
        if kind == "set_state":
            if value not in NODE_STATES and value not in JOB_STATES:
                self.reporter.warning(
                    "workflow.state",
                    where / kind,
                    f"'{value}' is not a normative node state nor a job state",
                    "normative: " + ", ".join(NODE_STATES) + "; jobs: " + ", ".join(JOB_STATES),
                )
        elif kind == "call_operation":
            op = value.get("operation") if isinstance(value, dict) else value
            if isinstance(op, str) and isinstance(target, str) and target in self.index.nodes:
                interface, _, operation = op.rpartition(".")
                operations = self.index.operations_of(target, interface)
                if operations is None:
                    self.reporter.error(
                        "workflow.unknown-operation",
                        where / kind,
                        f"node '{target}' has no interface '{interface}'",
                        did_you_mean(interface, self.index.interfaces_of(target)),
                    )
                elif operation not in operations:
                    self.reporter.error(
                        "workflow.unknown-operation",
                        where / kind,
                        f"interface '{interface}' of '{target}' has no operation '{operation}'",
                        did_you_mean(operation, operations),
                    )
        elif kind in ("delegate", "inline"):
            name = value.get("workflow") if isinstance(value, dict) else value
            if kind == "inline" and isinstance(name, str) and name not in workflows:
                self.reporter.error(
                    "workflow.unknown",
                    where / kind,
                    f"inline refers to unknown workflow '{name}'",
                    did_you_mean(name, workflows),
                )
