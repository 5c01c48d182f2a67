"""What the engine does for every executor, a plugin's included (``orch.executors`` entry
points): what it logs and returns is masked, whatever it masks itself, and nothing is started
once the operation is cancelled. The executor here is a plugin that forgets to mask, as one
might: orch's own executors are tested on their own."""

from __future__ import annotations

import threading
from pathlib import Path

from orch import deployments
from orch.engine.runner import EngineOptions
from orch.executors.base import OperationResult, RunContext, Task
from orch.state import Store

SECRET = "s3cret-Value-9431"
BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports: [orch-hpc:1.0.0]
topology_template:
  inputs:
    password: {type: string, metadata: {sensitive: true}}
  node_templates:
    thing:
      type: tosca.nodes.Root
      interfaces:
        Standard:
          create:
            implementation: {file: leaky, type: orch.artifacts.Builtin}
            inputs: {password: {get_input: password}}
"""


class LeakyPlugin:
    """Logs and returns the password it is given, unmasked."""

    name = "leaky"
    kinds = "a test plugin"

    def __init__(self) -> None:
        self.ran = threading.Event()

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return implementation == "leaky"

    def run(self, task: Task, context: RunContext) -> OperationResult:
        self.ran.set()
        context.log("stdout", f"connecting with {task.inputs['password']}")
        return OperationResult("ok", rc=0, outputs={"token": task.inputs["password"]},
                               stdout_tail=[f"pw={task.inputs['password']}"])  # fmt: skip


def test_a_plugin_that_forgets_to_mask_leaks_nothing(tmp_path: Path) -> None:
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    prepared = deployments.prepare(str(tmp_path / "bp.yaml"), [f"password={SECRET}"])
    store = Store.open(tmp_path / "state")
    plugin = LeakyPlugin()
    outcome = deployments.deploy(store, prepared, "leak", EngineOptions(), executors=[plugin])
    assert plugin.ran.is_set() and outcome.status == "deployed", outcome
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
