"""Which executors exist: the built-in ones, then any a plugin registers under the entry-point
group ``orch.executors`` (a class or factory returning an Executor)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "orch.executors"


def load_executors() -> list[Any]:
    from orch.executors.ansible import AnsibleExecutor
    from orch.executors.images import ImageExecutor
    from orch.executors.pycompss import PyCOMPSsExecutor
    from orch.executors.script import ScriptExecutor
    from orch.executors.slurm import SlurmExecutor
    from orch.executors.staging import StagingExecutor

    executors: list[Any] = [
        ScriptExecutor(), AnsibleExecutor(), SlurmExecutor(), PyCOMPSsExecutor(),
        ImageExecutor(), StagingExecutor(),
    ]  # fmt: skip
    executors.append(__import__("orch.executors.dls", fromlist=["DlsExecutor"]).DlsExecutor())
    executors += __import__("orch.executors.eflows_images", fromlist=["x"]).all_executors()
    executors.append(__import__("orch.executors.easybuild", fromlist=["x"]).EasyBuildExecutor())
    executors.append(__import__("orch.executors.allocation", fromlist=["x"]).AllocationExecutor())
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        executors.append(entry.load()())
    return executors
