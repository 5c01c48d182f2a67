"""What orch's built-in executors (slurm, pycompss, image, stage) share: which implementations
they take, and where a node's files live on a site.

A built-in operation names its executor in an ``orch.artifacts.Builtin`` artifact (see
``tosca_types/orch-hpc.yaml``) and reads the node's evaluated properties (``Task.properties``),
its requirements' targets (``Task.related``) and the site's defaults (``Task.site``).

The site helpers live in ``orch.remote`` (below the executors, so that ``orch.images`` uses
them too) and are re-exported here under their old names.
"""

from __future__ import annotations

from orch.artifact_types import BUILTIN_ARTIFACTS
from orch.remote import DEFAULT_WORK_DIR as DEFAULT_WORK_DIR
from orch.remote import deployment_dir as deployment_dir
from orch.remote import environment_lines as environment_lines
from orch.remote import expand_home as expand_home
from orch.remote import module_lines as module_lines
from orch.remote import node_dir as node_dir
from orch.remote import quote_path as quote_path
from orch.remote import remove_if_empty as remove_if_empty
from orch.remote import resolve_on_site as resolve_on_site
from orch.remote import safe_segment as safe_segment
from orch.remote import setting as setting
from orch.remote import site_default as site_default
from orch.remote import work_root as work_root


def accepts_builtin(name: str, implementation: str, artifact_type: str | None) -> bool:
    """Whether an implementation is the built-in executor ``name``."""
    return artifact_type in BUILTIN_ARTIFACTS and implementation == name
