"""From a plan's step to an executor's ``Task``: the operation's inputs evaluated now, orch's
environment variables (NODE, INSTANCE, HOST, SOURCE_*...), its files from the deployment's
snapshot, the secrets to mask, and for built-in implementations the node's properties and what
its requirements point at. Pure but for reading blobs: no executor runs here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orch.engine import jobs
from orch.engine.evaluate import EvaluationError, Evaluator, Scope
from orch.engine.hosts import host_for, site_for
from orch.executors.base import Artifact, Task, as_text
from orch.plan.steps import Plan, Step
from orch.state import JobRow, Store
from orch.tosca.model import FileRef, Model, Operation

_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TaskBuilder:
    """Builds the tasks of one run (the engine makes one per step it starts)."""

    def __init__(
        self, deployment: str, model: Model, plan: Plan, evaluator: Evaluator, store: Store,
        options: Any,
    ):  # fmt: skip
        self.name = deployment
        self.model = model
        self.plan = plan
        self.evaluator = evaluator
        self.store = store
        self.options = options

    def task(
        self, step: Step, operation: Operation, workflow_inputs: dict[str, Any],
        job: JobRow | None = None,
    ) -> Task:  # fmt: skip
        """The operation of ``step``, its inputs evaluated now, ready for an executor."""
        scope = Scope(
            instance=None if step.link is not None else step.instance,
            link=step.link,
            workflow_inputs=workflow_inputs,
        )
        inputs = {
            name: self.evaluator.value(value, scope) for name, value in operation.inputs.items()
        }
        host = host_for(self.evaluator, step.instance)
        instance = self.plan.instances[step.instance]
        environment = {
            "NODE": step.node,
            "INSTANCE": env_instance(step.instance),
            "INSTANCES": ",".join(
                env_instance(i) for i in self.evaluator.by_node.get(step.node, [])
            ),
            "HOST": host.name.rsplit("/", 1)[0] if not host.is_local else "localhost",
            "DEPLOYMENT_ID": self.name,
        }
        exported = {}
        for input_name, value in workflow_inputs.items():
            # a workflow's inputs reach its operations' environment, as Yorc exports them
            if _SHELL_NAME.fullmatch(str(input_name)) and input_name not in environment:
                environment[str(input_name)] = exported[str(input_name)] = as_text(value)
        if job is not None:
            environment[jobs.JOB_ID] = job.job_id
        if instance.host is not None:
            environment["HOST"] = instance.host.rsplit("/", 1)[0]
        if step.link is not None:
            for side, iid in (("SOURCE", step.link.source), ("TARGET", step.link.target)):
                node = iid.rsplit("/", 1)[0]
                environment[f"{side}_NODE"] = node
                environment[f"{side}_INSTANCE"] = env_instance(iid)
                environment[f"{side}_INSTANCES"] = ",".join(
                    env_instance(i) for i in self.evaluator.by_node.get(node, [])
                )
        dependencies = [self.artifact(ref) for ref in operation.dependencies]
        dependencies.extend(self.artifact(ref) for ref in scope.artifacts)
        assert operation.implementation is not None
        secrets = list(self.options.secret_values)
        secrets.extend(s for s in (host.password, host.private_key) if s)
        builtin: dict[str, Any] = {}
        if operation.implementation.builtin and step.link is None:
            builtin = {
                "properties": self.evaluator.value(
                    self.model.nodes[step.node].properties, Scope(instance=step.instance)
                ),
                "related": self.related(step.node),
                "site": site_for(self.evaluator, step.instance),
                "group": self.co_scheduled(step.node, step.instance),
                "base_dir": str(Path(self.model.entry).resolve().parent),
            }
            # what built-ins chosen by type tell types apart by: the type, its ancestors
            environment["NODE_TYPE"] = ",".join(self.model.nodes[step.node].types)
            if getattr(self.options, "registry", None):
                environment["ORCH_REGISTRY"] = self.options.registry
        return Task(
            deployment=self.name,
            node=step.node,
            instance=step.instance,
            interface=step.interface or "",
            operation=step.operation or "",
            implementation=self.artifact(operation.implementation),
            dependencies=tuple(dependencies),
            inputs=inputs,
            environment=environment,
            workflow_inputs=exported,
            host=host,
            timeout=operation.timeout or self.options.default_timeout,
            secret_values=(*secrets, *getattr(self.evaluator, "secret_values", ())),
            **builtin,
        )

    def related(self, node_name: str) -> dict[str, dict[str, Any]]:
        """Per requirement, what a built-in executor reads of its target: the target's
        properties, with its attributes (declared defaults, then live values) over them."""
        related: dict[str, dict[str, Any]] = {}
        for requirement in self.model.nodes[node_name].requirements:
            target = self.model.nodes.get(requirement.target or "")
            if target is None or requirement.name in related:
                continue
            instance = self.evaluator.by_node.get(target.name, [f"{target.name}/0"])[0]
            scope = Scope(instance=instance)
            values = dict(self.evaluator.value(target.properties, scope))
            for name, value in target.attributes.items():
                try:
                    values[name] = self.evaluator.value(value, scope)
                except EvaluationError:
                    continue  # an attribute not set yet
            values.update(self.evaluator.attributes.get(instance, {}))
            related[requirement.name] = values
            if requirement.kind:  # Alien4Cloud names it; its definition says what it is
                related.setdefault(requirement.kind, values)
        return related

    def co_scheduled(self, node_name: str, instance_id: str) -> Any:
        """The co-scheduled group (``orch.groups.CoScheduled``) the node is a member of, with
        what each member's job is made of, its leader and the leader's newest job; None for a
        node in no such group."""
        from orch.executors.coscheduled import CoScheduled
        from orch.plan.lifecycle import co_scheduled
        from orch.tosca.model import GROUP_TYPE

        for name, group in self.model.groups.items():
            if GROUP_TYPE not in group.get("types", ()) or node_name not in group["members"]:
                continue
            index = instance_id.rsplit("/", 1)[1]
            members = []
            for member in group["members"]:
                node = self.model.nodes.get(member)
                if node is None:
                    continue
                instance = f"{member}/{index}"
                if instance not in self.evaluator.instances:
                    instance = self.evaluator.by_node.get(member, [instance])[0]
                members.append({
                    "node": member,
                    "instance": instance,
                    "properties": self.evaluator.value(node.properties, Scope(instance=instance)),
                    "related": self.related(member),
                    "host": host_for(self.evaluator, instance),
                    "site": site_for(self.evaluator, instance),
                })  # fmt: skip
            leader = co_scheduled(self.model)[1].get(node_name, node_name)
            job = self.store.last_job(self.name, f"{leader}/{index}")
            properties = self.evaluator.value(group.get("properties") or {}, Scope())
            return CoScheduled(name, properties, tuple(members), leader,
                               job.job_id if job is not None else None)  # fmt: skip
        return None

    def artifact(self, ref: FileRef) -> Artifact:
        """A file an operation needs: its snapshot in the store (never the user's file)."""
        if ref.sha:
            return Artifact(ref.name, self.store.blob_path(ref.sha, ref.name))
        return Artifact(ref.name, Path(ref.path))


def env_instance(instance_id: str) -> str:
    """Yorc's INSTANCE form: 'web_0' for instance 'web/0'."""
    node, _, index = instance_id.rpartition("/")
    return f"{node}_{index}"
