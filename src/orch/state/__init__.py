"""What orch has deployed, kept so that it survives ``kill -9`` and can be resumed.

One state dir (default ``.orch/``) holds ``state.db`` (SQLite, WAL; one byte of it per deployment
is that deployment's lock), ``deployments/<name>/`` (its record and its operations' full output)
and ``blobs/`` (artifact snapshots). ``Store`` is the only way in: ``db`` (connection,
transactions, locks), ``records`` (runs, operations, jobs, steps, events) and ``store``
(deployments, instances, blobs, health) build it; ``rows`` are what it hands out.
"""

from orch.state.lock import DeploymentBusy, DeploymentLock, StateError
from orch.state.rows import Deployment, EventRow, InstanceRow, JobRow, OperationRow, RunRow
from orch.state.schema import SCHEMA_VERSION
from orch.state.store import Store

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
