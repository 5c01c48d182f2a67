"""eFlows4HPC topologies given bad input, through the real CLI: each failure names the node, the
operation and the cause, and nothing deployed is forgotten (the deployment stays listed; fixing
the cause and running the same command again resumes and succeeds).

The topologies are variants of blueprints/eflows4hpc/minimal/topology.yml written by the tests;
the site, registry, B2SHARE stand-in and secrets are those of tests/sites/eflows.py, WebDAV a
real WsgiDAV with basic auth (tests/sites/web.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sites.cli import Orch, site_yaml
from sites.eflows import set_secrets
from sites.fixtures import SlurmSite

MINIMAL = Path(__file__).resolve().parent.parent / "blueprints" / "eflows4hpc" / "minimal"
NAME = "minimal_workflow"
INPUTS = ("-i", "user_id=orchtest", "-i", "vault_id=0123456789abcdef")


def topology(orch: Orch, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The minimal topology, changed by ``change``, as topology.yml of the test's folder."""
    doc = yaml.safe_load((MINIMAL / "topology.yml").read_text())
    if change is not None:
        change(doc)
    path = orch.root / "topology.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def deploy(orch: Orch, registry: Path, *extra: str, check: int | None = 0) -> Any:
    return orch("deploy", "topology.yml", *INPUTS, "--poll-interval", "0.5", *extra,
                check=check, timeout=300, ORCH_REGISTRY=str(registry))  # fmt: skip


def listed(orch: Orch) -> dict[str, str]:
    """Deployment name -> status, as ``orch list`` shows them."""
    return {d["name"]: d["status"] for d in json.loads(orch("list", "-f", "json").stdout)}


def instances(orch: Orch) -> dict[str, dict[str, Any]]:
    status = json.loads(orch("status", NAME, "-f", "json").stdout)
    return {i["node"]: i for i in status["instances"]}


def errors(proc: Any) -> list[str]:
    """The lines orch wrote to standard error."""
    return proc.stderr.splitlines()


def site_path(prefix: str) -> str:
    """A fresh path in the site user's home (the site is this machine)."""
    return f"/home/orchtest/{prefix}-{os.getpid()}-{time.monotonic_ns()}"


# -- 1. no site for an environment --------------------------------------------------------------


def test_two_sites_and_no_site_option_is_a_configuration_error_naming_the_way_out(
    orch: Orch, site: SlurmSite, credential: str, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    sites.write_text(sites.read_text() + site_yaml(site, credential, name="hpc2", port=1))

    failed = deploy(orch, registry, check=3)
    assert errors(failed) == [
        f"orch: environment 'AbstractEnvironment' is no site yet: {sites} has 2 sites "
        "(hpc1, hpc2); say which with --site AbstractEnvironment=SITE"
    ]
    assert failed.stdout == ""
    assert listed(orch) == {NAME: "failed"}
    assert all(i["state"] == "initial" for i in instances(orch).values()), "something ran"

    deploy(orch, registry, "--site", "AbstractEnvironment=hpc1")
    assert listed(orch) == {NAME: "deployed"}
    image = instances(orch)["DLSDAGImageTransfer"]["attributes"]["image_file_path"]
    assert Path(image).is_file()


def test_a_site_option_naming_an_unknown_site_stops_before_anything_runs(
    orch: Orch, site: SlurmSite, registry: Path
) -> None:
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    failed = deploy(orch, registry, "--site", "AbstractEnvironment=hpc9", check=3)
    assert errors(failed)[0] == (
        f"orch: {sites}: error: no site 'hpc9' in {sites} (sites: hpc1) [sites.unknown-site]"
    )
    assert listed(orch) == {NAME: "failed"}
    assert all(i["state"] == "initial" for i in instances(orch).values()), "something ran"
    deploy(orch, registry, "--site", "AbstractEnvironment=hpc1")
    assert listed(orch) == {NAME: "deployed"}


@pytest.mark.xfail(strict=True, reason="engine: an unknown --site is not said as the "
                   "environment's (orch.engine.environments.site_attributes; see the report)")
def test_an_unknown_site_is_said_as_the_environments(orch: Orch, site: SlurmSite,
                                                     registry: Path) -> None:  # fmt: skip
    set_secrets(orch)
    topology(orch)
    sites = orch.root / "sites.yaml"
    failed = deploy(orch, registry, "--site", "AbstractEnvironment=hpc9", check=3)
    assert errors(failed) == [
        f"orch: environment 'AbstractEnvironment': --site names site 'hpc9', which {sites} "
        "does not have (sites: hpc1); say which with --site AbstractEnvironment=SITE"
    ]


@pytest.mark.xfail(strict=True, reason="engine/cli: --site NODE=SITE naming no environment "
                   "node is ignored (see the report)")
def test_a_site_option_naming_no_environment_node_is_refused(orch: Orch, site: SlurmSite,
                                                             registry: Path) -> None:  # fmt: skip
    set_secrets(orch)
    topology(orch)
    failed = deploy(orch, registry, "--site", "AbstractEnvironmnet=hpc1", check=3)
    assert errors(failed) == [
        "orch: --site AbstractEnvironmnet=hpc1: the topology has no execution environment "
        "node 'AbstractEnvironmnet' (environment nodes: AbstractEnvironment)"
    ]
    assert NAME not in listed(orch) or all(
        i["state"] == "initial" for i in instances(orch).values())
