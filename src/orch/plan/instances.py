"""Node instances: how many of each template, and which host instance each one sits on."""

from __future__ import annotations

from graphlib import TopologicalSorter

from orch.plan.steps import Instance, Link
from orch.tosca.model import HOSTED_ON, Model


def node_order(model: Model) -> list[str]:
    """Node names, each after every node it requires (the validator rejected cycles)."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name, node in model.nodes.items():
        sorter.add(name, *(r.target for r in node.requirements if r.target in model.nodes))
    try:
        return list(sorter.static_order())
    except Exception:  # a cycle the validator reported; order as written
        return list(model.nodes)


def make_instances(model: Model) -> dict[str, Instance]:
    """One instance per template by default; ``default_instances`` of Scalable more.

    A node hosted on a host with several instances gets its own count on each host instance
    (scaling a Compute scales what it hosts).
    """
    instances: dict[str, Instance] = {}
    by_node: dict[str, list[Instance]] = {}
    for name in node_order(model):
        node = model.nodes[name]
        host = node.host()
        hosts: list[Instance | None] = list(by_node.get(host, [])) if host else [None]
        if not hosts:
            hosts = [None]
        own: list[Instance] = []
        for host_instance in hosts:
            for _ in range(node.default_instances):
                index = len(own)
                instance = Instance(
                    f"{name}/{index}", name, index, host_instance.id if host_instance else None
                )
                own.append(instance)
        by_node[name] = own
        for instance in own:
            instances[instance.id] = instance
    return instances


def links(model: Model, instances: dict[str, Instance]) -> list[Link]:
    """Relationship instances: HostedOn links an instance to its own host instance; other
    relationships link each source instance to every target instance."""
    by_node: dict[str, list[Instance]] = {}
    for instance in instances.values():
        by_node.setdefault(instance.node, []).append(instance)
    result: list[Link] = []
    for source in instances.values():
        node = model.nodes[source.node]
        for index, requirement in enumerate(node.requirements):
            targets = by_node.get(requirement.target, [])
            if requirement.is_a(HOSTED_ON) and source.host is not None:
                targets = [instances[source.host]]
            result.extend(Link(source.id, target.id, index) for target in targets)
    return result
