"""What orch has deployed, kept so that it survives ``kill -9`` and can be resumed.

One state dir (default ``.orch/``) holds ``state.db`` (SQLite, WAL), ``locks/<name>.lock`` (one
writer per deployment, across processes), ``deployments/<name>/logs/`` (operations' full output)
and ``blobs/`` (artifact snapshots). ``Store`` is the only way in.
"""

from orch.state.lock import DeploymentBusy, DeploymentLock, StateError
from orch.state.store import (
    SCHEMA_VERSION,
    Deployment,
    EventRow,
    InstanceRow,
    JobRow,
    OperationRow,
    RunRow,
    Store,
)

__all__ = [
    "SCHEMA_VERSION",
    "Deployment",
    "DeploymentBusy",
    "DeploymentLock",
    "EventRow",
    "InstanceRow",
    "JobRow",
    "OperationRow",
    "RunRow",
    "StateError",
    "Store",
]
