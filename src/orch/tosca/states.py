"""Names the checks and the model share: node and job states, orch's builtin artifact types.

Kept apart from ``model`` so that validating a blueprint does not import the model's classes.
"""

from __future__ import annotations

from orch.artifact_types import BUILTIN_ARTIFACT as BUILTIN_ARTIFACT  # re-exported
from orch.artifact_types import BUILTIN_ARTIFACTS as BUILTIN_ARTIFACTS

NODE_STATES = (
    "initial",
    "creating",
    "created",
    "configuring",
    "configured",
    "starting",
    "started",
    "stopping",
    "stopped",
    "deleting",
    "deleted",
    "error",
)
"""The normative node states (TOSCA 1.3, 3.4.1), in lifecycle order."""
JOB_STATES = ("submitting", "submitted", "executing", "executed", "cancelled", "failed")
"""The states of a job node after it started (Alien4Cloud's job states): between ``started`` and
``stopping`` in the lifecycle."""
