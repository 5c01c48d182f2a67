"""The executor of orch's job types (``orch.nodes.SlurmJob`` and its MPI and Apptainer kinds),
named ``slurm`` in their types for history: it runs them on whichever scheduler the site has
(``BatchJobExecutor``: Slurm or Son of Grid Engine)."""

from __future__ import annotations

from orch.executors.batch import BatchJobExecutor


class SlurmExecutor(BatchJobExecutor):
    name = "slurm"
    kinds = ("orch.artifacts.Builtin 'slurm' (batch jobs: submit, run, cancel, on the site's "
             "scheduler: Slurm or SGE)")  # fmt: skip
