"""Built-in implementations chosen by a node's type.

eFlows4HPC's node types implement their operations with playbooks that call services (an
image-creation service, the Data Logistics Service's Airflow, the Yorc PyCOMPSs plugin). orch
does the same work itself: for a node of one of these types, the operations below run orch's
built-in executor of that name instead of the playbook, with the operation's inputs as the type
declares them. An operation bound to None does nothing (its work is done by the one before:
orch's transfers and builds are not asynchronous, so there is no ``run`` to poll).

``Standard.start`` of the types with ``run_in_standard_mode`` runs only when that property is
true (as their ``start_in_standard_mode.yaml`` does); a value only known at run time (a
function) keeps the operation, and the executor decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.tosca.states import BUILTIN_ARTIFACT

STANDARD_START = "Standard.start"
SUBMIT = "Runnable.submit"
RUN = "Runnable.run"
CANCEL = "Runnable.cancel"


@dataclass(frozen=True)
class Binding:
    """The built-in executors of one type's operations (``Interface.operation`` by short
    interface name)."""

    type_name: str
    operations: dict[str, str | None]
    standard_mode: bool = False
    """Standard.start runs only when the node's ``run_in_standard_mode`` is true."""
    unused_inputs: frozenset[str] = frozenset()
    """Operation inputs the executor does not read, dropped from the operations (e.g. an SSH
    key read from Vault, where orch uses the site's credentials): never evaluated nor asked."""
    site_property: str | None = None
    """A property naming the login node, for a type with no environment requirement: the
    site of sites.yaml of that name or address, else the only site, is its host."""


_PYCOMPSS = {SUBMIT: "pycompss", RUN: "pycompss", CANCEL: "pycompss"}

BINDINGS: tuple[Binding, ...] = (
    # most derived first: the first type a node is wins
    Binding(
        "dls.ansible.nodes.DLSDAGImageTransfer",
        {STANDARD_START: "eflows-image-transfer", SUBMIT: "eflows-image-transfer", RUN: None},
        standard_mode=True,
    ),
    Binding(
        "dls.ansible.nodes.DLSDAGRun",
        {STANDARD_START: "dls", SUBMIT: "dls", RUN: None},
        standard_mode=True,
    ),
    Binding(
        "imagecreation.ansible.nodes.ImageCreation",
        {STANDARD_START: "eflows-image", SUBMIT: "eflows-image", RUN: None, CANCEL: None},
        standard_mode=True,
    ),
    Binding("org.eflows4hpc.pycompss.plugin.nodes.PyCOMPSJob", _PYCOMPSS),
    Binding(
        "pycomps.ansible.nodes.PyCOMPSJob",
        _PYCOMPSS,
        unused_inputs=frozenset({"key"}),  # the Vault SSH key: the site's credentials serve
        site_property="pycomps_endpoint",
    ),
)


def binding_for(types: list[str]) -> Binding | None:
    """The binding of a node whose type and ancestors are ``types`` (None: runs as written)."""
    for binding in BINDINGS:
        if binding.type_name in types:
            return binding
    return None


def bound_executor(binding: Binding, interface: str, operation: str) -> tuple[bool, str | None]:
    """(whether the binding decides this operation, the executor or None for nothing)."""
    key = f"{interface.rsplit('.', 1)[-1]}.{operation}"
    if key not in binding.operations:
        return False, None
    return True, binding.operations[key]


def standard_mode_off(binding: Binding, properties: dict[str, Any]) -> bool:
    """Whether ``Standard.start`` is written off: the type runs in standard mode only when
    asked, and the node's property says plainly it is not."""
    if not binding.standard_mode:
        return False
    value = properties.get("run_in_standard_mode", False)
    return value is False or value is None or value == "false"


BUILTIN_TYPE = BUILTIN_ARTIFACT
"""The artifact type of what a binding puts in an operation's place."""
