"""eFlows4HPC topologies (Alien4Cloud dialect) as their users write them: how orch reads and
plans them. The topologies are under blueprints/eflows4hpc/."""

from __future__ import annotations

from pathlib import Path

import pytest

from orch.deployments import prepare
from orch.plan import deploy_plan, workflow_plan
from orch.plan.steps import Plan

ROOT = Path(__file__).resolve().parent.parent / "blueprints" / "eflows4hpc"
INPUTS = ["user_id=alice", "vault_id=0123456789abcdef"]


@pytest.fixture
def catalogs(corpus: Path) -> list[str]:
    return [str(corpus)]


def _operations(plan: Plan) -> list[str]:
    return sorted(
        f"{s.node}:{s.interface.rsplit('.', 1)[-1]}.{s.operation}"
        for s in plan.steps.values()
        if s.kind == "operation"
    )


def test_an_operation_of_standard_written_short_is_the_inherited_interfaces_own(
    catalogs: list[str],
) -> None:
    """Alien4Cloud's normative types declare ``tosca.interfaces.node.lifecycle.Standard`` by its
    full name; the eFlows4HPC types fill it as ``Standard:``. One interface: the types'
    ``start`` implementation must be found, not an empty inherited one."""
    prepared = prepare(str(ROOT / "minimal" / "topology.yml"), INPUTS, catalogs)
    node = prepared.model.nodes["ImageCreation"]
    standard = [k for k, ops in node.interfaces.items() if "start" in ops]
    assert len(standard) == 1, node.interfaces.keys()
    start = node.operation("tosca.interfaces.node.lifecycle.Standard", "start")
    assert start is not None and start.implementation is not None
    assert node.operation("Standard", "start") is start


def test_deploy_submits_no_job_and_the_workflow_runs_them(catalogs: list[str]) -> None:
    """Yorc's install workflow never runs a job: the topology's own workflow (exec_job) does."""
    prepared = prepare(str(ROOT / "minimal" / "topology.yml"), INPUTS, catalogs)
    deploy = _operations(deploy_plan(prepared.model))
    assert not [op for op in deploy if ".submit" in op or ".run" in op], deploy
    assert "ImageCreation:Standard.start" in deploy
    run = _operations(workflow_plan(prepared.model, "exec_job"))
    assert run == [
        "DLSDAGStageInData:Runnable.run",
        "DLSDAGStageInData:Runnable.submit",
        "PyCOMPSJob:Runnable.run",
        "PyCOMPSJob:Runnable.submit",
    ]
