"""eFlows4HPC topologies (Alien4Cloud dialect) as their users write them: how orch reads and
plans them. The topologies are under blueprints/eflows4hpc/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orch.deployments import prepare
from orch.plan import deploy_plan, workflow_plan
from orch.plan.steps import Plan
from sites.cli import Orch

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
    assert run == [  # the transfer is done when submit ends: its run has nothing to watch
        "DLSDAGStageInData:Runnable.submit",
        "PyCOMPSJob:Runnable.run",
        "PyCOMPSJob:Runnable.submit",
    ]


def test_types_operations_run_orchs_builtin_executors_chosen_by_type(catalogs: list[str]) -> None:
    """The playbooks that call eFlows4HPC's services are replaced by orch's executors; a
    start that the type runs only in standard mode is nothing when the node says false."""
    prepared = prepare(str(ROOT / "minimal" / "topology.yml"), INPUTS, catalogs)
    nodes = prepared.model.nodes

    def executor(node: str, interface: str, operation: str) -> str | None:
        found = nodes[node].operation(interface, operation)
        assert found is not None, (node, interface, operation)
        return found.implementation.name if found.implementation else None

    assert executor("ImageCreation", "Standard", "start") == "eflows-image"
    assert executor("DLSDAGImageTransfer", "Standard", "start") == "eflows-image-transfer"
    assert executor("DLSDAGStageInData", "Standard", "start") is None  # not in standard mode
    assert executor("DLSDAGStageInData", "Runnable", "submit") == "dls"
    assert executor("DLSDAGStageInData", "Runnable", "run") is None
    assert executor("PyCOMPSJob", "Runnable", "submit") == "pycompss"
    start = nodes["ImageCreation"].operation("Standard", "start")
    assert start is not None and start.replaces == "start_in_standard_mode.yaml"


def test_req_target_reads_the_environment_a_requirement_points_at(catalogs: list[str]) -> None:
    """``[REQ_TARGET, environment, cluster_login_host]``: the requirement is found by its
    type_requirement (the template names it dependsOnAbstractEnvironmentExec_env)."""
    from orch.engine.evaluate import Evaluator, Scope
    from orch.plan.instances import make_instances

    prepared = prepare(str(ROOT / "minimal" / "topology.yml"), INPUTS, catalogs)
    model = prepared.model
    attributes = {"AbstractEnvironment/0": {"cluster_login_host": "login.hpc.example"}}
    evaluator = Evaluator(model, make_instances(model), prepared.inputs, attributes, {})
    call = {"get_attribute": ["REQ_TARGET", "environment", "cluster_login_host"]}
    assert evaluator.value(call, Scope(instance="DLSDAGStageInData/0")) == "login.hpc.example"


def test_an_environment_is_the_site_that_lists_it_else_the_only_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orch.engine.environments import UnboundEnvironment, choose_site

    sites = tmp_path / "sites.yaml"
    monkeypatch.setenv("ORCH_SITES", str(sites))
    sites.write_text("sites:\n  hpc1: {host: a.example}\n")
    assert choose_site("Env", {}) == "hpc1"  # the only site
    sites.write_text("sites:\n  hpc1: {host: a.example}\n"
                     "  hpc2: {host: b.example, environments: [Env]}\n")  # fmt: skip
    assert choose_site("Env", {}) == "hpc2"
    assert choose_site("Env", {"Env": "hpc1"}) == "hpc1"  # --site Env=hpc1
    assert choose_site("Env", {"": "hpc1"}) == "hpc1"  # --site hpc1
    with pytest.raises(UnboundEnvironment, match=r"--site Other=SITE"):
        choose_site("Other", {})  # two sites, none lists it


MODEL_UPLOAD = """
tosca_definitions_version: alien_dsl_3_0_0
metadata: {template_name: model_upload, template_version: 0.1.0}
imports:
  - tosca-normative-types:1.0.0-ALIEN20
  - eflows4hpc.env:1.1.0
  - dls.ansible:1.4.0
topology_template:
  node_templates:
    Env:
      type: eflows4hpc.env.nodes.AbstractEnvironment
    Upload:
      type: dls.ansible.nodes.DLSDAGModelUpload
      properties:
        dls_api_username: u
        dls_api_password: p
        dag_id: mlflow_upload
        location: models
      requirements:
        - env: {type_requirement: environment, node: Env,
                capability: eflows4hpc.env.capabilities.ExecutionEnvironment,
                relationship: tosca.relationships.DependsOn}
  workflows:
    exec_job:
      steps:
        upload:
          target: Upload
          activities: [{call_operation: tosca.interfaces.node.lifecycle.Runnable.submit}]
"""


def test_a_dls_type_orch_does_not_serve_is_refused_before_anything_runs(orch: Orch) -> None:
    """MLflow uploads are the DLS's own: the workflow stops before its first step, naming the
    node and why (not after the steps before it ran)."""
    orch.write("sites.yaml", "sites:\n  hpc1: {host: 127.0.0.1, port: 9}\n")
    orch.write("topology.yml", MODEL_UPLOAD)
    planned = orch("plan", "--workflow", "exec_job", "topology.yml").stdout
    assert "Upload Runnable.submit: orch's 'dls' in place of submit_dag.yaml  REFUSED: " in planned
    orch("deploy", "topology.yml")
    refused = orch("run", "exec_job", "-n", "model_upload", check=3)
    assert "Upload/0 tosca.interfaces.node.lifecycle.Runnable.submit: " in refused.stderr
    assert "MLflow model uploads are not supported" in refused.stderr
    status = json.loads(orch("status", "model_upload", "-f", "json").stdout)
    assert not status["jobs"]


def test_a_call_with_nothing_to_run_says_so_in_the_plan(catalogs: list[str]) -> None:
    """The run of a DLS transfer is done by its submit: the workflow's step still moves the
    job's state, and the plan names the call instead of ``-> None``."""
    prepared = prepare(str(ROOT / "minimal" / "topology.yml"), INPUTS, catalogs)
    plan = workflow_plan(prepared.model, "exec_job")
    [step] = [s for s in plan.steps.values() if s.label == "DLSDAGStageInData_run"]
    assert step.kind == "state" and step.state_after == "executed"
    assert step.title == (
        "DLSDAGStageInData/0 tosca.interfaces.node.lifecycle.Runnable.run (nothing to run)"
        " -> executed"
    )
