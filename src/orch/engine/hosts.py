"""Which machine an operation runs on: the Compute its node is HostedOn, reached over SSH, or
the orchestrator's own machine.

A Compute is remote when it has an address other than ``localhost``: the ``address`` property
(orch types), else its ``public_address``, ``private_address`` or ``ip_address`` attribute. The
port and the credentials come from its ``endpoint`` capability (``port``; ``credentials`` as
Yorc writes them, or ``credential``): ``user``, ``token`` with ``token_type`` password or
private_key (key text or a key file), or ``keys`` naming key files. ``token_type: orch`` names a
credential stored with ``orch credentials`` by its token.

A Compute with a ``site`` property (``orch.nodes.Site``) is the login node of that site of
``sites.yaml`` (``$ORCH_SITES``, ``./sites.yaml``, ``~/.config/orch/sites.yaml``): address, port,
user and credentials come from there, so blueprints name sites, not machines.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from orch.engine.evaluate import EvaluationError, Evaluator, Scope
from orch.executors.base import Host
from orch.tosca.model import COMPUTE

LOCAL = Host("localhost")
_ADDRESS_ATTRIBUTES = ("public_address", "private_address", "ip_address")
CREDENTIAL_TOKEN_TYPES = ("orch", "orch_token", "credential")
"""token_type values meaning: the token of a key stored with `orch credentials`."""


def compute_of(evaluator: Evaluator, instance_id: str) -> str | None:
    """The nearest Compute instance along the HostedOn chain, the instance itself included."""
    current: str | None = instance_id
    while current is not None:
        instance = evaluator.instances[current]
        if evaluator.model.nodes[instance.node].is_a(COMPUTE):
            return current
        current = instance.host
    return None


def host_for(evaluator: Evaluator, instance_id: str) -> Host:
    compute = compute_of(evaluator, instance_id)
    if compute is None:
        bound = _environment_site(evaluator, instance_id)
        if bound is not None:
            environment, site = bound
            return dataclasses.replace(_site_host(site, environment), name=environment)
        return LOCAL
    node = evaluator.model.nodes[evaluator.instances[compute].node]
    scope = Scope(instance=compute)
    site = evaluator.value(node.properties.get("site"), scope)
    if site:
        return dataclasses.replace(_site_host(str(site), node.name), name=compute)
    address = _address(evaluator, node, compute, scope)
    if not address or address == "localhost":
        return Host(compute)
    endpoint = node.capabilities.get("endpoint", {}).get("properties", {})
    endpoint = evaluator.value(endpoint, scope)
    port = endpoint.get("port") or 22
    credentials = endpoint.get("credentials") or endpoint.get("credential") or {}
    if not isinstance(credentials, dict):
        credentials = {}
    user = credentials.get("user")
    token = credentials.get("token")
    token_type = str(credentials.get("token_type") or ("password" if token else ""))
    identity_file = private_key = password = None
    if token and token_type in ("private_key", "key", "ssh_key"):
        if str(token).lstrip().startswith("-----BEGIN"):
            private_key = str(token)
        else:
            identity_file = os.path.expanduser(str(token))
    elif token and token_type in CREDENTIAL_TOKEN_TYPES:
        identity_file = _stored_key(str(token), node.name)
    elif token and token_type == "password":
        password = str(token)
    keys = credentials.get("keys")
    if identity_file is None and private_key is None and isinstance(keys, dict):
        for value in keys.values():
            if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
                private_key = value
                break
            if isinstance(value, str) and value:
                identity_file = os.path.expanduser(value)
                break
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"Compute '{node.name}': endpoint port '{port}' is not a number"
        ) from None
    return Host(
        compute,
        address=str(address),
        port=port,
        user=str(user) if user else None,
        identity_file=identity_file,
        private_key=private_key,
        password=password,
    )


def site_for(evaluator: Evaluator, instance_id: str) -> Any:
    """The sites.yaml ``Site`` whose login node hosts the instance, if any."""
    compute = compute_of(evaluator, instance_id)
    if compute is None:
        bound = _environment_site(evaluator, instance_id)
        return _site(bound[1], bound[0]) if bound is not None else None
    node = evaluator.model.nodes[evaluator.instances[compute].node]
    name = evaluator.value(node.properties.get("site"), Scope(instance=compute))
    return _site(str(name), node.name) if name else None


def _environment_site(evaluator: Evaluator, instance_id: str) -> tuple[str, str] | None:
    """(environment instance, site) for a node hosted on no Compute that requires an
    execution environment bound to a site (``engine/environments.py``)."""
    from orch.engine.environments import SITE_ATTRIBUTE, environment_of

    node = evaluator.instances[instance_id].node
    environment = environment_of(evaluator.model, node)
    if environment is None:
        return _endpoint_site(evaluator, instance_id)
    instance = evaluator.by_node.get(environment, [f"{environment}/0"])[0]
    site = evaluator.attributes.get(instance, {}).get(SITE_ATTRIBUTE)
    return (instance, str(site)) if site else None


def _endpoint_site(evaluator: Evaluator, instance_id: str) -> tuple[str, str] | None:
    """For a type bound to an executor that names its login node in a property (the older
    pycomps.ansible PyCOMPSJob's ``pycomps_endpoint``) and has no environment: the site of
    that name or address, else the only site of sites.yaml."""
    from orch.sites.config import SitesError, current_sites
    from orch.tosca.bindings import binding_for

    node = evaluator.model.nodes[evaluator.instances[instance_id].node]
    binding = binding_for(node.types)
    if binding is None or binding.site_property is None:
        return None
    endpoint = evaluator.value(node.properties.get(binding.site_property),
                               Scope(instance=instance_id))  # fmt: skip
    try:
        book = current_sites()
    except SitesError as exc:
        raise EvaluationError(f"'{node.name}' needs a site of sites.yaml: {exc}") from None
    named = [s.name for s in book if endpoint and str(endpoint) in (s.name, s.address)]
    if len(named) == 1:
        return instance_id, named[0]
    if len(book) == 1:
        return instance_id, next(iter(book)).name
    raise EvaluationError(
        f"'{node.name}': {binding.site_property} '{endpoint or ''}' is no site of {book.path} "
        f"(sites: {', '.join(sorted(book.sites))}): name one there"
    )


def _address(evaluator: Evaluator, node: Any, compute: str, scope: Scope) -> Any:
    if node.properties.get("address"):
        return evaluator.value(node.properties["address"], scope)
    live = evaluator.attributes.get(compute, {})
    for name in _ADDRESS_ATTRIBUTES:
        value = live.get(name)
        if value is None and name in node.attributes:
            value = evaluator.value(node.attributes[name], scope)
        if value:
            return value
    return None


def _site(name: str, node: str) -> Any:
    """The site called ``name`` in sites.yaml; a missing or wrong file names the node."""
    from orch.sites.config import SitesError, current_sites

    try:
        return current_sites().get(name)
    except SitesError as exc:
        raise EvaluationError(f"Compute '{node}': site '{name}': {exc}") from None


def _site_host(name: str, node: str) -> Host:
    from orch.sites.credentials import CredentialError

    try:
        return _site(name, node).host()
    except CredentialError as exc:
        raise EvaluationError(f"Compute '{node}': site '{name}': {exc}") from None


def _stored_key(token: str, node: str) -> str:
    from orch.sites.credentials import CredentialError, CredentialStore

    try:
        return str(CredentialStore.default().key_path(token))
    except CredentialError as exc:
        raise EvaluationError(f"Compute '{node}': {exc}") from None
