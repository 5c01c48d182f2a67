"""STUB: replaced by the pycompss executor's work."""

from __future__ import annotations

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin


class PyCOMPSsExecutor:
    name = "pycompss"
    kinds = "orch.artifacts.Builtin 'pycompss'"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        return OperationResult("failed", message="the pycompss executor is not built yet")
