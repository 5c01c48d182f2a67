"""Execution environments: eFlows4HPC's ``AbstractEnvironment`` nodes are sites of sites.yaml.

In eFlows4HPC an Alien4Cloud location makes the abstract environment concrete; in orch a site
does. Each environment node is bound to a site when its instance starts (``--site NODE=SITE``,
``--site SITE`` for all, else the site that lists it under ``environments`` in sites.yaml,
else the only site) and gets the site's values as its
attributes (``cluster_login_host``, ``pycompss_modules``, ``user_name``...), stored with the
deployment, so that later runs use the same site. A node that requires an environment (and is
hosted on no Compute) runs its operations with that site as its host.
"""

from __future__ import annotations

from typing import Any

ENVIRONMENT_TYPE = "eflows4hpc.env.nodes.AbstractEnvironment"
SITE_ATTRIBUTE = "site"


class UnboundEnvironment(Exception):
    """An environment cannot be bound to a site (the message says how to bind it)."""


def is_environment(node: Any) -> bool:
    return bool(node.is_a(ENVIRONMENT_TYPE))


def environment_of(model: Any, node_name: str) -> str | None:
    """The environment node that ``node_name`` requires, if any (the first one)."""
    for requirement in model.nodes[node_name].requirements:
        target = model.nodes.get(requirement.target)
        if target is not None and is_environment(target):
            return target.name
    return None


def choose_site(node: str, chosen: dict[str, str]) -> str:
    """The site ``node`` is bound to: ``--site NODE=SITE``, ``--site SITE``, the site listing
    it under ``environments``, the only site."""
    from orch.sites.config import SitesError, current_sites

    try:
        book = current_sites()
    except SitesError as exc:
        raise UnboundEnvironment(f"environment '{node}' needs a site: {exc}") from None
    given = chosen.get(node, chosen.get(""))
    if given is not None:
        if given not in book.sites:
            listed = ", ".join(sorted(book.sites)) or "none"
            raise UnboundEnvironment(
                f"environment '{node}': --site names site '{given}', which {book.path} does not "
                f"have (sites: {listed}); say which with --site {node}=SITE"
            )
        return given
    claimed = sorted(site.name for site in book if node in site.environments)
    if len(claimed) == 1:
        return claimed[0]
    if len(claimed) > 1:
        raise UnboundEnvironment(
            f"environment '{node}' is listed under environments by {len(claimed)} sites of "
            f"{book.path} ({', '.join(claimed)}): say which with --site {node}=SITE"
        )
    names = sorted(book.sites)
    if len(names) == 1:
        return names[0]
    listed = ", ".join(names) or "none"
    raise UnboundEnvironment(
        f"environment '{node}' is no site yet: {book.path} has {len(names)} sites ({listed}); "
        f"say which with --site {node}=SITE"
    )


def unknown_environments(model: Any, chosen: dict[str, str]) -> list[str]:
    """``--site NODE=SITE`` naming no execution environment node of the topology."""
    environments = sorted(n for n, node in model.nodes.items() if is_environment(node))
    listed = ", ".join(environments) or "none"
    return [
        f"--site {name}={site}: the topology has no execution environment node '{name}' "
        f"(environment nodes: {listed})"
        for name, site in chosen.items()
        if name and name not in environments
    ]


def site_attributes(name: str) -> dict[str, Any]:
    """What eFlows4HPC's environment attributes are for the site called ``name``."""
    from orch.sites.config import SitesError, current_sites

    try:
        site = current_sites().get(name)
    except SitesError as exc:
        raise UnboundEnvironment(str(exc)) from None
    return {
        SITE_ATTRIBUTE: name,
        "cluster_login_host": site.address,
        "user_name": site.user or "",
        "pycompss_modules": ",".join(site.modules),
        "dls_api_url": "",
        "image_creation_machine_platform": "",
        "image_creation_machine_architecture": "",
        "image_creation_machine_container_engine": site.container_runtime or "",
        "image_creation_machine_mpi": "",
        "image_creation_machine_gpu": "",
    }  # every attribute the type declares is set: an empty one keeps the node's own value
