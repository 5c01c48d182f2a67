"""The TOSCA normative deploy and undeploy workflows as step graphs.

Deploy, per node instance, after every instance it requires is fully deployed:
``create -> pre_configure_source/target -> configure -> post_configure_source/target -> start
-> add_target/add_source``. Undeploy reverses it, each instance before the instances it requires:
``remove_target/remove_source -> stop -> delete``, and only for what the deploy did.

Stages without an implementation only move the instance's state; consecutive ones merge into
one step so that a node with a single operation costs a single step.
"""

from __future__ import annotations

from dataclasses import dataclass

from orch.plan.instances import links, make_instances, node_order
from orch.plan.steps import Instance, Link, Plan, Step
from orch.tosca.model import NODE_STATES, STANDARD, Model

# (operation, state while it runs, state after it)
DEPLOY_STAGES = (
    ("create", "creating", "created"),
    ("configure", "configuring", "configured"),
    ("start", "starting", "started"),
)
UNDEPLOY_STAGES = (("stop", "stopping", "stopped"), ("delete", "deleting", "deleted"))
# relationship operations run between stages: (after stage, operations, which end runs them)
DEPLOY_LINK_OPS = {
    "create": (("pre_configure_source", "source"), ("pre_configure_target", "target")),
    "configure": (("post_configure_source", "source"), ("post_configure_target", "target")),
    "start": (("add_target", "source"), ("add_source", "target")),
}
UNDEPLOY_LINK_OPS_BEFORE = (("remove_target", "source"), ("remove_source", "target"))

STOPPABLE = frozenset({"starting", "started", "stopping"})
# every state between the first create and the last delete
DELETABLE = frozenset(NODE_STATES[NODE_STATES.index("creating") : NODE_STATES.index("deleted")])


def has_operation(model: Model, node: str, interface: str, operation: str) -> bool:
    found = model.nodes[node].operation(interface, operation)
    return found is not None and found.implementation is not None


def has_link_operation(model: Model, link: Link, operation: str) -> bool:
    requirement = model.nodes[link.source.rsplit("/", 1)[0]].requirements[link.requirement]
    return any(
        ops[operation].implementation is not None
        for ops in requirement.interfaces.values()
        if operation in ops
    )


@dataclass
class _Chain:
    """Builds one instance's sequence of steps, merging steps that only change state."""

    plan: dict[str, Step]
    instance: Instance
    first_deps: list[str]
    last: str | None = None

    def stage(self, operation: str, before: str, after: str, runs: bool) -> None:
        if not runs:
            if self.last is not None and self.plan[self.last].link is None:
                self.plan[self.last].state_after = after
                return
            self._add(
                Step(
                    f"{self.instance.id}:{operation}",
                    "state",
                    self.instance.node,
                    self.instance.id,
                    state_after=after,
                )
            )
            return
        self._add(
            Step(
                f"{self.instance.id}:Standard.{operation}",
                "operation",
                self.instance.node,
                self.instance.id,
                "Standard",
                operation,
                state_before=before,
                state_after=after,
            )
        )

    def link_op(self, link: Link, operation: str, side: str) -> None:
        runs_on = link.source if side == "source" else link.target
        self._add(
            Step(
                f"{link.source}>{link.target}#{link.requirement}:Configure.{operation}",
                "operation",
                runs_on.rsplit("/", 1)[0],
                runs_on,
                "Configure",
                operation,
                link=Link(link.source, link.target, link.requirement, side),  # type: ignore[arg-type]
            )
        )

    def _add(self, step: Step) -> None:
        step.deps = [self.last] if self.last is not None else list(self.first_deps)
        self.plan[step.id] = step
        self.last = step.id


def deploy_plan(model: Model) -> Plan:
    instances = make_instances(model)
    all_links = links(model, instances)
    outgoing: dict[str, list[Link]] = {}
    for link in all_links:
        outgoing.setdefault(link.source, []).append(link)
    steps: dict[str, Step] = {}
    final: dict[str, str] = {}
    for instance in _ordered(model, instances):
        mine = outgoing.get(instance.id, [])
        deps = sorted({final[link.target] for link in mine if link.target in final})
        chain = _Chain(steps, instance, deps)
        for operation, before, after in DEPLOY_STAGES:
            chain.stage(
                operation, before, after, has_operation(model, instance.node, STANDARD, operation)
            )
            for link in mine:
                for link_operation, side in DEPLOY_LINK_OPS[operation]:
                    if has_link_operation(model, link, link_operation):
                        chain.link_op(link, link_operation, side)
        if chain.last is not None:
            final[instance.id] = chain.last
    return Plan("deploy", instances, steps)


def undeploy_plan(model: Model, states: dict[str, str]) -> Plan:
    """Undo what was deployed: ``states`` are the instances' current states (from the store);
    instances never created are left alone, stop runs only where start was reached."""
    instances = make_instances(model)
    all_links = links(model, instances)
    incoming: dict[str, list[Link]] = {}
    outgoing: dict[str, list[Link]] = {}
    for link in all_links:
        incoming.setdefault(link.target, []).append(link)
        outgoing.setdefault(link.source, []).append(link)
    steps: dict[str, Step] = {}
    final: dict[str, str] = {}
    for instance in reversed(_ordered(model, instances)):
        state = states.get(instance.id, "initial")
        if state not in DELETABLE:
            continue
        deps = sorted(
            {final[link.source] for link in incoming.get(instance.id, []) if link.source in final}
        )
        chain = _Chain(steps, instance, deps)
        if state in STOPPABLE:
            for link in outgoing.get(instance.id, []):
                for link_operation, side in UNDEPLOY_LINK_OPS_BEFORE:
                    if has_link_operation(model, link, link_operation):
                        chain.link_op(link, link_operation, side)
        for operation, before, after in UNDEPLOY_STAGES:
            runs = has_operation(model, instance.node, STANDARD, operation)
            if operation == "stop" and state not in STOPPABLE:
                continue
            chain.stage(operation, before, after, runs)
        if chain.last is not None:
            final[instance.id] = chain.last
    return Plan("undeploy", instances, steps)


def _ordered(model: Model, instances: dict[str, Instance]) -> list[Instance]:
    by_node: dict[str, list[Instance]] = {}
    for instance in instances.values():
        by_node.setdefault(instance.node, []).append(instance)
    return [i for name in node_order(model) for i in by_node.get(name, [])]
