"""STUB: replaced by the stage executor's work."""

from __future__ import annotations

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin


class StagingExecutor:
    name = "stage"
    kinds = "orch.artifacts.Builtin 'stage'"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        return OperationResult("failed", message="the stage executor is not built yet")
