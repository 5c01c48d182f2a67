"""What a plan is made of: node instances and the steps over them, with their dependencies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepKind = Literal["operation", "state"]
JobPhase = Literal["submit", "run", "cancel"]


@dataclass(frozen=True)
class Instance:
    id: str
    """'node/index', e.g. 'web/0'."""
    node: str
    index: int
    host: str | None = None
    """The instance this one is HostedOn."""


@dataclass(frozen=True)
class Link:
    """One relationship between two instances, from requirement ``requirement`` of the source."""

    source: str
    target: str
    requirement: int
    """Index in the source node's requirements."""
    side: Literal["source", "target"] = "source"
    """Which end the operation runs on."""


@dataclass
class Step:
    id: str
    kind: StepKind
    node: str
    instance: str
    interface: str | None = None
    operation: str | None = None
    link: Link | None = None
    state_before: str | None = None
    """Instance state set when the step begins."""
    state_after: str | None = None
    """Instance state set when the step succeeds."""
    deps: list[str] = field(default_factory=list)
    """Steps that must succeed before this one runs."""
    on_failure_of: list[str] = field(default_factory=list)
    """Workflow failure handlers: runs only when one of these steps failed."""
    label: str = ""
    """Workflow step name (imperative workflows)."""
    job: JobPhase | None = None
    """A job's submit, run (called again at the poll interval until the job ends) or cancel."""

    @property
    def title(self) -> str:
        if self.kind == "state":
            if self.operation:  # a call with nothing to run
                state = f" -> {self.state_after}" if self.state_after else ""
                return f"{self.instance} {self.interface}.{self.operation} (nothing to run){state}"
            return f"{self.instance} -> {self.state_after}"
        where = self.instance
        if self.link is not None:
            where = f"{self.link.source} -> {self.link.target}"
        return f"{where} {self.interface}.{self.operation}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if v not in (None, [], "")}


@dataclass
class Plan:
    kind: str
    """'deploy', 'undeploy' or 'run:NAME'."""
    instances: dict[str, Instance]
    steps: dict[str, Step]
    """In a valid execution order (each step after its dependencies)."""

    def dependents(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {sid: [] for sid in self.steps}
        for step in self.steps.values():
            for dep in (*step.deps, *step.on_failure_of):
                result[dep].append(step.id)
        return result

    def waves(self) -> list[list[Step]]:
        """Steps grouped by depth: each wave can start once the waves before it are done.

        Only for showing the plan: the engine starts a step as soon as its own dependencies are
        done, not wave by wave.
        """
        depth: dict[str, int] = {}
        for step in self.steps.values():
            before = [*step.deps, *step.on_failure_of]
            depth[step.id] = 1 + max((depth[d] for d in before), default=-1)
        waves: list[list[Step]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for step in self.steps.values():
            waves[depth[step.id]].append(step)
        return waves

    def operations(self) -> list[Step]:
        return [s for s in self.steps.values() if s.kind == "operation"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "instances": [asdict(i) for i in self.instances.values()],
            "steps": [s.to_dict() for s in self.steps.values()],
        }
