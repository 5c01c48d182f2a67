"""What differs between a deployment as it was deployed and a blueprint with its inputs now.

``orch deploy`` on a deployment that drifted stops and shows this; ``orch diff`` shows it on
request; ``orch deploy --update`` applies it: nodes whose properties, type, requirements,
artifacts, instance count or ``create`` changed are replaced (deleted with the old blueprint,
created with the new one), together with every node that requires them, directly or not, since
they were configured against the old one; operations whose implementation, files or inputs
changed run again; added nodes are created and removed ones deleted. Outputs, workflows and
descriptions change nothing deployed: they are taken over without an update. Only what was
deployed drifts: a node never created, an operation that never succeeded, runs as it is now.

A value that uses ``get_input`` changes when the input does, and one that uses ``get_property``
of another node changes when that node's property does: effective values are compared, not
only what is written. Secret inputs are never stored, so their values cannot be compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orch.plan.lifecycle import deploy_plan
from orch.plan.steps import Plan, Step
from orch.tosca.model import STANDARD, FileRef, Model, Node, Operation, Requirement

REPLACE = "replace"
RERUN = "rerun"
CREATE = "create"
DELETE = "delete"
STORE = "store"
"""Nothing runs, but what a later command runs changes (a deployed node's undeploy operation)."""
UPDATES = frozenset({REPLACE, RERUN, CREATE, DELETE, STORE})
"""The actions that need ``--update``."""
INPUT = "input"
"""An input given another value: stored; what it changes is listed apart (not an update in
itself: an input nothing deployed uses changes nothing)."""
TAKE = "take"
"""Taken over with the new snapshot without an update: nothing deployed depends on it."""

RERUN_OPERATIONS = frozenset(
    {"configure", "start", "pre_configure_source", "pre_configure_target",
     "post_configure_source", "post_configure_target", "add_target", "add_source", "submit",
     "run"}
)  # fmt: skip
"""Operations a deploy runs again on update when they changed (with what follows them on the
same instance). A changed ``create`` replaces the node instead: what the old one created is
deleted with the inputs it was created with. Changes of the others (stop, delete, ...) are
kept for the next undeploy."""
CREATE_OPERATION = "create"


@dataclass(frozen=True)
class Change:
    """One difference, and what ``--update`` does about it."""

    subject: str
    """What changed: 'input samples', 'node simulation', 'simulation Standard.start'."""
    detail: str
    """How, in words: 'property samples: 1000 -> 5000'."""
    action: str
    """replace, rerun, create, delete, store, input or take (``UPDATES`` need --update)."""

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "detail": self.detail, "action": self.action}


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    """Nodes deleted with the old snapshot and created with the new one."""
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    rerun: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """node -> (interface key, operation) of operations to run again (node operations, and
    relationship operations of the node's requirements as ('#<index>', operation))."""
    unknown: list[str] = field(default_factory=list)
    """Secret inputs whose values could not be compared."""

    @property
    def drifted(self) -> bool:
        """Whether anything deployed would change (not only taken-over parts)."""
        return any(c.action in UPDATES for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "changes": [c.to_dict() for c in self.changes],
            "replace": sorted(self.replaced),
            "create": sorted(self.added),
            "delete": sorted(self.removed),
            "rerun": {n: sorted(f"{i}.{o}" for i, o in ops) for n, ops in self.rerun.items()},
            "not_compared": sorted(self.unknown),
        }


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _references(value: Any, found: dict[str, set[str]]) -> None:
    """Collect ``get_input`` names and the nodes ``get_property`` names, at any depth."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, args), = value.items()
            if key == "get_input":
                name = args[0] if isinstance(args, list) and args else args
                if isinstance(name, str):
                    found.setdefault("inputs", set()).add(name)
            elif key == "get_property" and isinstance(args, list) and args and isinstance(
                args[0], str
            ):
                found.setdefault("nodes", set()).add(args[0])
            elif key in ("get_attribute", "get_operation_output") and isinstance(args, list) and (
                args and isinstance(args[0], str)
            ):
                found.setdefault("attributes", set()).add(args[0])
        for item in value.values():
            _references(item, found)
    elif isinstance(value, list):
        for item in value:
            _references(item, found)


def _effective(value: Any, inputs: dict[str, Any]) -> Any:
    """A value with the inputs it uses beside it: equal only if both are equal."""
    found: dict[str, set[str]] = {}
    _references(value, found)
    used = {name: inputs.get(name) for name in sorted(found.get("inputs", ()))}
    return [value, used] if used else value


def _file(ref: FileRef | None) -> Any:
    if ref is None:
        return None
    return [ref.name, ref.type, ref.sha, ref.builtin]


def _operation(op: Operation, inputs: dict[str, Any]) -> Any:
    return {
        "implementation": _file(op.implementation),
        "dependencies": [_file(d) for d in op.dependencies],
        "inputs": _effective(op.inputs, inputs),
        "outputs": op.outputs,
        "timeout": op.timeout,
        "operation_host": op.operation_host,
    }


def _requirement(req: Requirement, inputs: dict[str, Any]) -> Any:
    return [req.name, req.target, req.capability, req.relationship,
            _effective(req.properties, inputs)]  # fmt: skip


def _shape(node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
    """What makes a node's instances what they are: a change here replaces them."""
    return {
        "type": node.type,
        "properties": {k: _effective(v, inputs) for k, v in node.properties.items()},
        "capabilities": {
            name: _effective(cap.get("properties", {}), inputs)
            for name, cap in node.capabilities.items()
        },
        "requirements": [_requirement(r, inputs) for r in node.requirements],
        "artifacts": {k: _file(v) for k, v in node.artifacts.items()},
        "instances": node.default_instances,
    }


def _describe(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Words for what differs between two node shapes."""
    details = []
    if old["type"] != new["type"]:
        details.append(f"type: {old['type']} -> {new['type']}")
    for section in ("properties", "capabilities", "artifacts"):
        before, after = old[section], new[section]
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                singular = section.rstrip("s").replace("ie", "y")
                details.append(
                    f"{singular} {key}: {_show(_plain(before.get(key)))} -> "
                    f"{_show(_plain(after.get(key)))}"
                )
    if old["requirements"] != new["requirements"]:
        details.append("requirements changed")
    if old["instances"] != new["instances"]:
        details.append(f"instances: {old['instances']} -> {new['instances']}")
    return details


def _plain(value: Any) -> Any:
    """A value as written (without the input values ``_effective`` put beside it)."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict):
        return value[0] if not value[1] else {"value": value[0], "inputs": value[1]}
    return value


def _operations(node: Node, inputs: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {key: _operation(op, inputs) for key, op in _node_operations(node)}


@dataclass(frozen=True)
class Deployed:
    """What a deployment has done so far: only that can drift. A node never created, or an
    operation that never succeeded, is deployed as the blueprint says now by the next deploy,
    which resumes: changing it needs no update."""

    live: frozenset[str]
    """Nodes with an instance whose create succeeded (in any state from created to before
    deleted)."""
    done: frozenset[str]
    """The deploy plan's steps done."""


def compute(
    old: Model,
    old_inputs: dict[str, Any],
    new: Model,
    new_inputs: dict[str, Any],
    secrets: frozenset[str] = frozenset(),
    deployed: Deployed | None = None,
) -> Diff:
    """The difference between a deployment's snapshot and a new model with its inputs; with
    ``deployed``, what was not deployed yet is taken over instead of updated."""
    diff = Diff()
    _inputs(diff, old_inputs, new_inputs, secrets)
    compared_old = {k: v for k, v in old_inputs.items() if k not in secrets}
    compared_new = {k: v for k, v in new_inputs.items() if k not in secrets}
    live = deployed.live if deployed is not None else frozenset(old.nodes)
    shapes_old = {n: _shape(node, compared_old) for n, node in old.nodes.items()}
    shapes_new = {n: _shape(node, compared_new) for n, node in new.nodes.items()}
    for name in sorted(set(new.nodes) - set(old.nodes)):
        diff.added.add(name)
        diff.changes.append(Change(f"node {name}", f"added ({new.nodes[name].type})", CREATE))
    for name in sorted(set(old.nodes) - set(new.nodes)):
        if name in live:
            diff.removed.add(name)
            diff.changes.append(Change(f"node {name}", f"removed ({old.nodes[name].type})",
                                       DELETE))  # fmt: skip
        else:
            diff.changes.append(Change(f"node {name}", NOT_DEPLOYED.format("removed"), TAKE))
    common = sorted(set(old.nodes) & set(new.nodes))
    direct = {n for n in common if shapes_old[n] != shapes_new[n]}
    created_anew = {
        n for n in common
        if _creates(old.nodes[n], compared_old) != _creates(new.nodes[n], compared_new)
    }  # fmt: skip
    direct |= created_anew
    direct |= _through_properties(new, common, direct)
    for name in sorted(direct - live):
        diff.changes.append(Change(f"node {name}", NOT_DEPLOYED.format("changed"), TAKE))
    direct &= live
    replaced = _dependents(new, direct | diff.removed | diff.added) & set(common) & live
    replaced |= direct
    diff.replaced = replaced
    for name in sorted(replaced):
        if name in direct:
            details = _describe(shapes_old[name], shapes_new[name])
            if name in created_anew:
                what = _what_changed(_creates(old.nodes[name], compared_old),
                                     _creates(new.nodes[name], compared_new))  # fmt: skip
                details.append(f"Standard.create: {what}")
            detail = "; ".join(details) or "uses a property of a replaced node"
        else:
            detail = "requires a node that is replaced, added or removed"
        diff.changes.append(Change(f"node {name}", detail, REPLACE))
    plan = deploy_plan(new) if deployed is not None else None
    for name in common:
        if name in replaced:
            continue
        _operation_changes(diff, name, old.nodes[name], new.nodes[name], compared_old,
                           compared_new, _ran(plan, deployed, name), name in live)  # fmt: skip
    _reading_changed_attributes(diff, new, [n for n in common if n not in replaced],
                                _ran(plan, deployed, None))  # fmt: skip
    _taken(diff, "output", old.outputs, new.outputs)
    _taken(diff, "workflow", old.workflows, new.workflows)
    if (old.description or "") != (new.description or ""):
        diff.changes.append(Change("description", "changed", TAKE))
    return diff


NOT_DEPLOYED = "{}, never deployed: deployed as it is now"


def _ran(
    plan: Plan | None, deployed: Deployed | None, node: str | None
) -> Callable[[str, tuple[str, str]], bool]:
    """Whether an operation (node, key) succeeded on some instance: only then is running it
    again an update (without ``deployed``, every operation counts as run)."""

    def ran(name: str, key: tuple[str, str]) -> bool:
        if plan is None or deployed is None:
            return True
        return any(
            step.id in deployed.done
            for step in plan.steps.values()
            if step.kind == "operation" and _chain_node(step) == name and _matches(step, {key})
        )

    return ran


def _inputs(
    diff: Diff, old_inputs: dict[str, Any], new_inputs: dict[str, Any], secrets: frozenset[str]
) -> None:
    """Inputs given other values: stored by an update (what uses them is compared apart)."""
    for name in sorted(set(old_inputs) | set(new_inputs)):
        if name in secrets:
            diff.unknown.append(name)
            continue
        before, after = old_inputs.get(name), new_inputs.get(name)
        if name not in old_inputs:
            detail = f"added: {_show(after)}"
        elif name not in new_inputs:
            detail = f"removed (was {_show(before)})"
        elif before != after:
            detail = f"{_show(before)} -> {_show(after)}"
        else:
            continue
        diff.changes.append(Change(f"input {name}", detail, INPUT))


def _through_properties(model: Model, names: list[str], changed: set[str]) -> set[str]:
    """Nodes whose properties read (get_property) a property of a changed node."""
    more: set[str] = set()
    while True:
        grown = False
        for name in names:
            if name in changed or name in more:
                continue
            found: dict[str, set[str]] = {}
            _references(model.nodes[name].properties, found)
            if found.get("nodes", set()) & (changed | more):
                more.add(name)
                grown = True
        if not grown:
            return more


def _creates(node: Node, inputs: dict[str, Any]) -> Any:
    op = node.operation(STANDARD, CREATE_OPERATION)
    return None if op is None else _operation(op, inputs)


def _reading_changed_attributes(
    diff: Diff, model: Model, names: list[str], ran: Callable[[str, tuple[str, str]], bool]
) -> None:
    """Operations whose inputs read attributes (or outputs) of a node that is replaced, added
    or runs operations again: their inputs change with them, so they run again too."""
    while True:
        moving = diff.replaced | diff.added | set(diff.rerun)
        grown = False
        for name in names:
            for key, op in _node_operations(model.nodes[name]):
                if key[1] not in RERUN_OPERATIONS or key in diff.rerun.get(name, ()):
                    continue
                if not ran(name, key):
                    continue  # runs for the first time anyway
                found: dict[str, set[str]] = {}
                _references(op.inputs, found)
                read = (found.get("attributes", set()) & moving) - {name}
                if read:
                    diff.rerun.setdefault(name, set()).add(key)
                    shown = _title(model.nodes[name], *key)
                    diff.changes.append(Change(
                        f"{name} {shown}",
                        f"reads attributes of {', '.join(sorted(read))}, which change",
                        RERUN,
                    ))  # fmt: skip
                    grown = True
        if not grown:
            return


def _node_operations(node: Node) -> list[tuple[tuple[str, str], Operation]]:
    found = [((key, name), op) for key, ops in node.interfaces.items() for name, op in ops.items()]
    for index, requirement in enumerate(node.requirements):
        for ops in requirement.interfaces.values():
            found.extend(((f"#{index}", name), op) for name, op in ops.items())
    return found


def _dependents(model: Model, roots: set[str]) -> set[str]:
    """Nodes that require any of ``roots``, directly or through other nodes."""
    required_by: dict[str, set[str]] = {}
    for name, node in model.nodes.items():
        for requirement in node.requirements:
            required_by.setdefault(requirement.target, set()).add(name)
    found: set[str] = set()
    stack = list(roots)
    while stack:
        for source in required_by.get(stack.pop(), ()):
            if source not in found:
                found.add(source)
                stack.append(source)
    return found


def _operation_changes(
    diff: Diff, name: str, old: Node, new: Node, old_inputs: dict[str, Any],
    new_inputs: dict[str, Any], ran: Callable[[str, tuple[str, str]], bool], live: bool,
) -> None:  # fmt: skip
    before, after = _operations(old, old_inputs), _operations(new, new_inputs)
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        interface, operation = key
        shown = _title(new, interface, operation)
        what = _what_changed(before.get(key), after.get(key))
        if operation == CREATE_OPERATION and interface.rsplit(".", 1)[-1] == "Standard":
            continue  # compared with the node's shape: a changed create replaces the node
        if operation in RERUN_OPERATIONS and key in after:
            if ran(name, key):
                diff.rerun.setdefault(name, set()).add(key)
                diff.changes.append(Change(f"{name} {shown}", what, RERUN))
            else:
                diff.changes.append(Change(f"{name} {shown}", f"{what}, not run yet: runs as "
                                           "it is now", TAKE))  # fmt: skip
        elif live:
            diff.changes.append(Change(f"{name} {shown}", f"{what} (used by undeploy)", STORE))
        else:
            diff.changes.append(Change(f"{name} {shown}", f"{what} (never deployed)", TAKE))


def _title(node: Node, interface: str, operation: str) -> str:
    if interface.startswith("#"):
        index = int(interface[1:])
        requirement = node.requirements[index].name if index < len(node.requirements) else "?"
        return f"{requirement} Configure.{operation}"
    short = "Standard" if interface == STANDARD else interface.rsplit(".", 1)[-1]
    return f"{short}.{operation}"


def _what_changed(before: Any, after: Any) -> str:
    if before is None:
        return "added"
    if after is None:
        return "removed"
    parts = [key for key in after if before.get(key) != after.get(key)]
    words = {"implementation": "implementation file", "dependencies": "dependency files"}
    return ", ".join(words.get(p, p) for p in parts) + " changed"


def _taken(diff: Diff, kind: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            what = "added" if key not in old else "removed" if key not in new else "changed"
            diff.changes.append(Change(f"{kind} {key}", what, TAKE))


def input_references(value: Any) -> set[str]:
    """The inputs a value reads with ``get_input``, at any depth."""
    found: dict[str, set[str]] = {}
    _references(value, found)
    return found.get("inputs", set())


def rerun_steps(plan: Plan, rerun: dict[str, set[tuple[str, str]]]) -> set[str]:
    """The deploy plan's steps that an update runs again: the changed operations, and what
    follows each of them on the same instance (a reconfigured instance is started again)."""
    marked: set[str] = set()
    for step in plan.steps.values():
        changed = step.kind == "operation" and _matches(step, rerun.get(_chain_node(step), set()))
        follows = _owner(step) in {_owner(plan.steps[d]) for d in step.deps if d in marked}
        if changed or follows:
            marked.add(step.id)
    return marked


def _owner(step: Step) -> str:
    """The instance whose chain of steps a step belongs to (a relationship operation belongs
    to its source's chain, whichever end it runs on)."""
    return step.link.source if step.link is not None else step.instance


def _chain_node(step: Step) -> str:
    return _owner(step).rsplit("/", 1)[0]


def _matches(step: Step, keys: set[tuple[str, str]]) -> bool:
    for interface, operation in keys:
        if operation != step.operation:
            continue
        if interface.startswith("#"):
            if step.link is not None and step.link.requirement == int(interface[1:]):
                return True
        elif step.link is None and interface.rsplit(".", 1)[-1] == (step.interface or "").rsplit(
            ".", 1
        )[-1]:
            return True
    return False
