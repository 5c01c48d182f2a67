"""The planner (pure): instances, the normative deploy/undeploy order, imperative workflows,
and the runtime function evaluator over live attributes."""

from __future__ import annotations

import pytest

from orch.engine.evaluate import EvaluationError, Evaluator, Scope
from orch.plan import WorkflowError, deploy_plan, undeploy_plan, workflow_plan
from orch.plan.instances import links, make_instances
from orch.tosca.model import Model, build_model
from orch.tosca.validator import validate

THREE_TIER = """
node_types:
  app.Server:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      port: {type: integer, default: 8080}
    attributes:
      url: {type: string}
    interfaces:
      Standard:
        operations:
          create: scripts/create.sh
          configure: scripts/configure.sh
          start: scripts/start.sh
          stop: scripts/stop.sh
          delete: scripts/delete.sh

topology_template:
  inputs:
    greeting: {type: string, default: hi}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        scalable:
          properties: {default_instances: 2, min_instances: 1, max_instances: 3}
    db:
      type: app.Server
      requirements:
        - host: vm
    web:
      type: app.Server
      properties:
        port: 80
      requirements:
        - host: vm
        - dependency:
            node: db
            relationship:
              type: tosca.relationships.ConnectsTo
              interfaces:
                Configure:
                  operations:
                    pre_configure_source: scripts/link.sh
                    add_target: scripts/link.sh
  outputs:
    url: {value: {get_attribute: [web, url]}}
"""


def model_of(bp, text: str) -> Model:
    path = bp.write(text)
    for script in ("create", "configure", "start", "stop", "delete", "link", "run"):
        target = path.parent / "scripts" / f"{script}.sh"
        target.parent.mkdir(exist_ok=True)
        target.write_text("#!/bin/sh\n")
    result = validate(path)
    assert result.ok, [str(d) for d in result.diagnostics]
    return build_model(result.registry, result.template.data, result.entry)


def test_scalable_host_multiplies_hosted_instances(bp):
    model = model_of(bp, THREE_TIER)
    instances = make_instances(model)
    assert sorted(instances) == ["db/0", "db/1", "vm/0", "vm/1", "web/0", "web/1"]
    assert instances["web/1"].host == "vm/1"
    pairs = {(link.source, link.target) for link in links(model, instances)}
    assert ("web/1", "vm/1") in pairs and ("web/1", "vm/0") not in pairs
    # a DependsOn/ConnectsTo links each source instance to every target instance
    assert {("web/0", "db/0"), ("web/0", "db/1")} <= pairs


def test_deploy_order_follows_requirements_and_lifecycle(bp):
    plan = deploy_plan(model_of(bp, THREE_TIER))
    order = list(plan.steps)
    position = {sid: i for i, sid in enumerate(order)}
    for step in plan.steps.values():
        for dep in step.deps:
            assert position[dep] < position[step.id]  # an execution order
    web = [s for s in order if s.startswith("web/0:")]
    assert web == ["web/0:Standard.create", "web/0:Standard.configure", "web/0:Standard.start"]
    create = plan.steps["web/0:Standard.create"]
    # web waits for the db instances it connects to and for its host
    assert any(d.startswith("db/0") for d in create.deps)
    assert any(d.startswith("db/1") for d in create.deps)
    assert any(d.startswith("vm/0") for d in create.deps)
    pre = "web/0>db/0#1:Configure.pre_configure_source"
    assert plan.steps[pre].deps == ["web/0:Standard.create"]
    assert plan.steps["web/0:Standard.configure"].deps[0].endswith("pre_configure_source")
    # the two db instances are independent: the same wave
    waves = [[s.id for s in wave] for wave in plan.waves()]
    assert any({"db/0:Standard.create", "db/1:Standard.create"} <= set(w) for w in waves)
    # Compute without operations: one state step straight to started
    assert plan.steps["vm/0:create"].kind == "state"


def test_undeploy_reverses_and_only_undoes_what_was_done(bp):
    model = model_of(bp, THREE_TIER)
    states = {"vm/0": "started", "vm/1": "started", "db/0": "started", "db/1": "created",
              "web/0": "initial", "web/1": "initial"}  # fmt: skip
    plan = undeploy_plan(model, states)
    ids = list(plan.steps)
    assert not any(s.startswith("web/") for s in ids)  # never created: left alone
    assert "db/1:Standard.stop" not in plan.steps  # never started: no stop
    assert "db/1:Standard.delete" in plan.steps
    assert plan.steps["db/0:Standard.delete"].deps == ["db/0:Standard.stop"]
    vm_step = next(s for s in plan.steps.values() if s.instance == "vm/0")
    assert "db/0:Standard.delete" in vm_step.deps  # the host goes after what it hosts


def test_full_undeploy_runs_remove_target(bp):
    model = model_of(bp, THREE_TIER)
    plan = undeploy_plan(model, dict.fromkeys(make_instances(model), "started"))
    assert "web/0>db/0#1:Configure.remove_target" not in plan.steps  # not implemented
    assert plan.steps["web/0:Standard.stop"]
    db_stop = plan.steps["db/0:Standard.stop"]
    assert "web/0:Standard.delete" in db_stop.deps and "web/1:Standard.delete" in db_stop.deps


WORKFLOW = (
    THREE_TIER.replace("  outputs:\n    url: {value: {get_attribute: [web, url]}}\n", "")
    + """
  workflows:
    backup:
      steps:
        stop_web:
          target: web
          activities:
            - set_state: stopping
            - call_operation: Standard.stop
            - set_state: stopped
          on_success: [dump]
        dump:
          target: db
          activities:
            - call_operation: Standard.configure
          on_success: [restart]
          on_failure: [alert]
        restart:
          target: web
          activities:
            - inline: restart_only
        alert:
          target: vm
          activities:
            - call_operation: Standard.create
    restart_only:
      steps:
        start:
          target: web
          activities:
            - call_operation: Standard.start
"""
)


def test_imperative_workflow_graph(bp):
    model = model_of(bp, WORKFLOW)
    plan = workflow_plan(model, "backup")
    assert plan.kind == "run:backup"
    first = plan.steps["stop_web@web/0#0"]
    assert first.kind == "state" and first.state_after == "stopping"
    assert plan.steps["stop_web@web/0#1"].deps == ["stop_web@web/0#0"]
    dump = plan.steps["dump@db/0#0"]
    # on_success waits for every instance of the previous step
    assert set(dump.deps) == {"stop_web@web/0#2", "stop_web@web/1#2"}
    alert = plan.steps["alert@vm/0#0"]
    assert set(alert.on_failure_of) == {"dump@db/0#0", "dump@db/1#0"} and not alert.deps
    inlined = plan.steps["restart@web/0#0/start@web/0#0"]
    assert set(inlined.deps) == {"dump@db/0#0", "dump@db/1#0"}
    assert inlined.operation == "start"


def test_unknown_workflow_names_the_declared_ones(bp):
    model = model_of(bp, WORKFLOW)
    with pytest.raises(WorkflowError, match="declared: backup, restart_only"):
        workflow_plan(model, "nope")


def test_model_round_trips_through_json(bp):
    import json

    model = model_of(bp, THREE_TIER)
    data = json.loads(json.dumps(model.to_dict()))
    assert Model.from_dict(data).to_dict() == data
    web = Model.from_dict(data).nodes["web"]
    assert web.operation("Standard", "create").implementation.name == "scripts/create.sh"
    assert web.operation("tosca.interfaces.node.lifecycle.Standard", "start") is not None
    assert web.requirements[1].is_a("tosca.relationships.ConnectsTo")


def evaluator_for(model: Model) -> Evaluator:
    instances = make_instances(model)
    attributes = {"web/0": {"url": "http://a"}, "web/1": {"url": "http://b"},
                  "vm/0": {"public_address": "10.0.0.1"}}  # fmt: skip
    outputs = {("db/0", "Standard", "create"): {"TOKEN": "abc"}}
    return Evaluator(model, instances, {"greeting": "hello"}, attributes, outputs)


def test_runtime_functions(bp):
    evaluator = evaluator_for(model_of(bp, THREE_TIER))
    me = Scope(instance="web/0")
    value = evaluator.value
    assert value({"get_property": ["SELF", "port"]}, me) == 80
    assert value({"get_attribute": ["SELF", "url"]}, me) == "http://a"
    assert value({"get_attribute": ["web", "url"]}, me) == ["http://a", "http://b"]
    assert value({"get_attribute": ["HOST", "public_address"]}, me) == "10.0.0.1"
    assert value({"get_attribute": ["SELF", "tosca_id"]}, me) == "web/0"
    evaluator.outputs[("db/1", "Standard", "create")] = {"TOKEN": "def"}
    output = {"get_operation_output": ["db", "Standard", "create", "TOKEN"]}
    assert value(output, me) == ["abc", "def"]  # one value per instance
    nested = {"concat": [{"get_input": "greeting"}, " ", {"join": [["a", "b"], "-"]}, "!"]}
    assert value(nested, me) == "hello a-b!"
    assert value({"token": ["a:b:c", ":", 1]}, me) == "b"
    assert value({"get_nodes_of_type": "tosca.nodes.Compute"}, me) == ["vm"]
    assert value({"get_property": ["SELF", "dependency", "port"]}, me) == 8080


def test_runtime_function_errors_name_what_is_missing(bp):
    evaluator = evaluator_for(model_of(bp, THREE_TIER))
    me = Scope(instance="web/0")
    with pytest.raises(EvaluationError, match="no attribute 'nope'"):
        evaluator.value({"get_attribute": ["SELF", "nope"]}, me)
    with pytest.raises(EvaluationError, match=r"db/1 Standard\.create has no output 'TOKEN'"):
        evaluator.value({"get_operation_output": ["db", "Standard", "create", "TOKEN"]}, me)
    with pytest.raises(EvaluationError, match="only defined in relationship operations"):
        evaluator.value({"get_attribute": ["SOURCE", "url"]}, me)
    with pytest.raises(EvaluationError, match="no value for input 'missing'"):
        evaluator.value({"get_input": "missing"}, me)
