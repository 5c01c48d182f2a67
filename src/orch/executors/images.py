"""STUB: replaced by the image executor's work."""

from __future__ import annotations

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin


class ImageExecutor:
    name = "image"
    kinds = "orch.artifacts.Builtin 'image'"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        return OperationResult("failed", message="the image executor is not built yet")
