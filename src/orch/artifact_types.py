"""Artifact types that name one of orch's built-in executors instead of a file: what the
parser (tosca/) and the executors share, kept below both."""

BUILTIN_ARTIFACT = "orch.artifacts.Builtin"
"""An implementation carried out by one of orch's own executors: its ``file`` names the executor
(``slurm``, ``pycompss``, ``image``, ``stage``), not a file."""
BUILTIN_ARTIFACTS = (BUILTIN_ARTIFACT, "org.eflows4hpc.pycompss.plugin.artifacts.Deployment")
"""orch's, and the eFlows4HPC Yorc plugin's ``embedded`` PyCOMPSs implementation."""
