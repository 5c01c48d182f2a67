"""The TOSCA normative deploy and undeploy workflows as step graphs.

Deploy, per node instance, after every instance it requires is fully deployed:
``create -> pre_configure_source/target -> configure -> post_configure_source/target -> start
-> add_target/add_source``. Undeploy reverses it, each instance before the instances it requires:
``remove_target/remove_source -> stop -> delete``, and only for what the deploy did.

Stages without an implementation only move the instance's state; consecutive ones merge into
one step so that a node with a single operation costs a single step.

Jobs (nodes whose Runnable interface has ``submit``) are submitted once started, then their
``run`` operation watches them until they end; what depends on a job waits for its end. A
blueprint that declares its own ``run`` workflow (Alien4Cloud's convention) runs its jobs there
instead. Undeploy cancels a job that is still running before anything else of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orch.plan.instances import links, make_instances, node_order
from orch.plan.steps import Instance, Link, Plan, Step
from orch.tosca.model import GROUP_TYPE, JOB_STATES, NODE_STATES, RUNNABLE, STANDARD, Model

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

JOB_PHASES = (("submit", "submitting", "submitted"), ("run", "executing", "executed"))
RUN_WORKFLOW = "run"
"""The workflow that runs the jobs (declared by the blueprint, or made by orch)."""

STOPPABLE = frozenset({"starting", "started", "stopping", *JOB_STATES})
# every state between the first create and the last delete
DELETABLE = frozenset(
    {*NODE_STATES[NODE_STATES.index("creating") : NODE_STATES.index("deleted")], *JOB_STATES}
)


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

    def job(self, phase: str, before: str | None, after: str | None, prefix: str = "") -> None:
        self._add(
            Step(
                f"{prefix}{self.instance.id}:Runnable.{phase}",
                "operation",
                self.instance.node,
                self.instance.id,
                RUNNABLE,
                phase,
                state_before=before,
                state_after=after,
                job=phase,  # type: ignore[arg-type]
            )
        )

    def jobs(self, model: Model, prefix: str = "") -> None:
        """submit, then run (when it has an implementation) to watch the job to its end."""
        for phase, before, after in JOB_PHASES:
            if has_operation(model, self.instance.node, RUNNABLE, phase):
                self.job(phase, before, after, prefix)

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


def jobs_in_deploy(model: Model) -> bool:
    """Deploy runs the jobs unless the blueprint runs them in its own ``run`` workflow, or is
    an Alien4Cloud topology (whose install workflow never runs a job: its ``run`` workflow,
    declared or orch's, and its own workflows do)."""
    return RUN_WORKFLOW not in model.workflows and not model.is_alien


_DEPLOY_WORKFLOWS = frozenset({"install", "uninstall", "deploy", "undeploy"})


def jobs_of_workflows(model: Model) -> frozenset[str]:
    """Nodes whose job operations (Runnable submit or run) an imperative workflow of the
    blueprint calls, whatever its name (Alien4Cloud's ``exec_job``, ``run``...): that workflow
    submits them, ``orch run`` does, never deploy (as Yorc's install workflow never runs a job)."""
    called: set[str] = set()
    for name, workflow in model.workflows.items():
        if name in _DEPLOY_WORKFLOWS or not isinstance(workflow, dict):
            continue
        steps = workflow.get("steps")
        for body in (steps.values() if isinstance(steps, dict) else ()):
            if not isinstance(body, dict) or body.get("target_relationship"):
                continue
            for activity in body.get("activities") or ():
                if not isinstance(activity, dict) or "call_operation" not in activity:
                    continue
                value = activity["call_operation"]
                operation = value.get("operation") if isinstance(value, dict) else value
                interface, _, op_name = str(operation).rpartition(".")
                if op_name in ("submit", "run") and interface.rsplit(".", 1)[-1] == "Runnable":
                    called.add(str(body.get("target")))
    return frozenset(called)


def co_scheduled(model: Model) -> tuple[frozenset[tuple[str, str]], dict[str, str]]:
    """Members of co-scheduled groups (``orch.groups.CoScheduled``), which start together in
    one job: the (node, node) pairs of one group (one waits for the other's submit, never for
    its end), and each member's leader (the member that comes first in the plan's order: its
    submit submits the group's job; the others' submits wait for it and take their part)."""
    pairs: set[tuple[str, str]] = set()
    leaders: dict[str, str] = {}
    order = {name: i for i, name in enumerate(node_order(model))}
    for group in model.groups.values():
        if GROUP_TYPE not in group.get("types", ()):
            continue
        members = [m for m in group.get("members", ()) if m in model.nodes]
        pairs.update((a, b) for a in members for b in members if a != b)
        if members:
            leader = min(members, key=lambda m: order.get(m, 0))
            leaders.update({m: leader for m in members if m != leader})
    return frozenset(pairs), leaders


def _joined_submit(link: Link, steps: dict[str, Step],
                   together: frozenset[tuple[str, str]]) -> str | None:  # fmt: skip
    """The target's submit, when the link's two ends start together (one co-scheduled
    group): the source waits for it, never for the target's end."""
    pair = (link.source.rsplit("/", 1)[0], link.target.rsplit("/", 1)[0])
    submit = f"{link.target}:Runnable.submit"
    return submit if pair in together and submit in steps else None


def _waits_for(link: Link, final: dict[str, str], steps: dict[str, Step],
               together: frozenset[tuple[str, str]]) -> str | None:  # fmt: skip
    """The step a link's source waits for: the target's submit when both start together,
    else the target's last step."""
    return _joined_submit(link, steps, together) or final.get(link.target)


def _run_waits_for(link: Link, final: dict[str, list[str]], steps: dict[str, Step],
                   together: frozenset[tuple[str, str]]) -> list[str]:  # fmt: skip
    """``_waits_for`` in the run workflow, where a plain node stands for the jobs behind it."""
    submit = _joined_submit(link, steps, together)
    return [submit] if submit else final[link.target]


def _leader_submit(instance: Instance, leaders: dict[str, str],
                   steps: dict[str, Step]) -> list[str]:  # fmt: skip
    """A co-scheduled member waits for its leader's submit (of the same index)."""
    leader = leaders.get(instance.node)
    if leader is None:
        return []
    submit = f"{leader}/{instance.id.rsplit('/', 1)[1]}:Runnable.submit"
    return [submit] if submit in steps else []


def deploy_plan(model: Model) -> Plan:
    with_jobs = jobs_in_deploy(model)
    together, leaders = co_scheduled(model)
    workflow_jobs = jobs_of_workflows(model)
    instances = make_instances(model)
    all_links = links(model, instances)
    outgoing: dict[str, list[Link]] = {}
    for link in all_links:
        outgoing.setdefault(link.source, []).append(link)
    steps: dict[str, Step] = {}
    final: dict[str, str] = {}
    for instance in _ordered(model, instances):
        mine = outgoing.get(instance.id, [])
        waited = [_waits_for(link, final, steps, together) for link in mine]
        waited += _leader_submit(instance, leaders, steps)
        deps = sorted({step for step in waited if step is not None})
        chain = _Chain(steps, instance, deps)
        for operation, before, after in DEPLOY_STAGES:
            chain.stage(
                operation, before, after, has_operation(model, instance.node, STANDARD, operation)
            )
            for link in mine:
                for link_operation, side in DEPLOY_LINK_OPS[operation]:
                    if has_link_operation(model, link, link_operation):
                        chain.link_op(link, link_operation, side)
        if with_jobs and model.nodes[instance.node].is_job and instance.node not in workflow_jobs:
            chain.jobs(model)
        if chain.last is not None:
            final[instance.id] = chain.last
    return Plan("deploy", instances, steps)


def jobs_plan(model: Model) -> Plan:
    """orch's ``run`` workflow when the blueprint declares none: every job submitted and watched
    again, each after the jobs it requires (directly or through other nodes) have ended."""
    instances = make_instances(model)
    together, leaders = co_scheduled(model)
    outgoing: dict[str, list[Link]] = {}
    for link in links(model, instances):
        outgoing.setdefault(link.source, []).append(link)
    steps: dict[str, Step] = {}
    final: dict[str, list[str]] = {}
    for instance in _ordered(model, instances):
        before = sorted({s for link in outgoing.get(instance.id, [])
                         for s in _run_waits_for(link, final, steps, together)}
                        | set(_leader_submit(instance, leaders, steps)))  # fmt: skip
        if not model.nodes[instance.node].is_job:
            final[instance.id] = before  # jobs behind a plain node are still waited for
            continue
        chain = _Chain(steps, instance, before)
        chain.jobs(model)
        final[instance.id] = [chain.last] if chain.last is not None else before
    return Plan(f"run:{RUN_WORKFLOW}", instances, steps)


def undeploy_plan(
    model: Model, states: dict[str, str], running_jobs: frozenset[str] = frozenset()
) -> Plan:
    """Undo what was deployed: ``states`` are the instances' current states (from the store);
    instances never created are left alone, stop runs only where start was reached, and the
    instances in ``running_jobs`` have their job cancelled first."""
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
        if instance.id in running_jobs and has_operation(model, instance.node, RUNNABLE, "cancel"):
            chain.job("cancel", None, "cancelled")
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


def cancel_plan(model: Model, running_jobs: frozenset[str]) -> Plan:
    """``orch cancel``: the cancel operation of every instance whose job is running, all at
    once (a job without a cancel operation is left alone: nothing can stop it)."""
    instances = make_instances(model)
    steps: dict[str, Step] = {}
    for instance in instances.values():
        if instance.id in running_jobs and has_operation(model, instance.node, RUNNABLE, "cancel"):
            _Chain(steps, instance, []).job("cancel", None, "cancelled")
    return Plan("cancel", instances, steps)
