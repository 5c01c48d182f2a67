"""spack.yaml for a ``orch.nodes.SpackEnvironment``, and the build steps that install it.

The layout follows what ``spack containerize`` generates: the environment lives in
``/opt/spack-environment``, packages in ``/opt/software``, the view in ``/opt/views/view``, and
``activate.sh`` (``spack env activate --sh``) sets the run-time environment of the image.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

ENV_DIR = "/opt/spack-environment"
INSTALL_ROOT = "/opt/software"
VIEW_DIR = "/opt/views/view"
ACTIVATE = f"{ENV_DIR}/activate.sh"
SETUP_ENV = "/opt/spack/share/spack/setup-env.sh"

GPU_VARIANTS = {"cuda": ("+cuda", "cuda_arch"), "rocm": ("+rocm", "amdgpu_target")}


class SpackError(ValueError):
    """A Spack environment's properties cannot make a spack.yaml."""


def package_name(spec: str) -> str:
    """The package of a spec (``openmpi@4.1 +cuda`` -> ``openmpi``)."""
    match = re.match(r"\s*([A-Za-z0-9_][A-Za-z0-9_.-]*)", spec)
    if not match:
        raise SpackError(f"{spec!r} is not a Spack spec")
    return match.group(1)


def _all_preferences(env: dict[str, Any]) -> dict[str, Any]:
    """``packages: all:``: target, GPU variants, compiler and MPI preferences."""
    prefs: dict[str, Any] = {}
    if env.get("target"):
        prefs["target"] = [str(env["target"])]
    gpu = str(env.get("gpu") or "none")
    if gpu != "none":
        if gpu not in GPU_VARIANTS:
            raise SpackError(f"gpu must be none, cuda or rocm, not {gpu!r}")
        variant, arch_key = GPU_VARIANTS[gpu]
        variants = [variant]
        if env.get("gpu_arch"):
            variants.append(f"{arch_key}={env['gpu_arch']}")
        prefs["variants"] = variants
    if env.get("compiler"):
        prefs["compiler"] = [str(env["compiler"])]
    if env.get("mpi"):
        prefs["providers"] = {"mpi": [package_name(str(env["mpi"]))]}
    return prefs


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, maps merged key by key (the user's packages win)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def environment(env: dict[str, Any]) -> dict[str, Any]:
    """The ``spack:`` document of a SpackEnvironment's properties."""
    specs = [str(s) for s in env.get("specs") or [] if str(s).strip()]
    if env.get("mpi") and str(env["mpi"]) not in specs:
        specs.append(str(env["mpi"]))
    if not specs:
        raise SpackError("a Spack environment needs at least one spec (property specs)")
    for spec in specs:
        package_name(spec)
    packages: dict[str, Any] = {}
    preferences = _all_preferences(env)
    if preferences:
        packages["all"] = preferences
    extra = env.get("packages") or {}
    if not isinstance(extra, dict):
        raise SpackError("packages must be a map of Spack packages settings")
    packages = _merge(packages, extra)
    document: dict[str, Any] = {
        "specs": specs,
        "view": VIEW_DIR if env.get("view", True) else False,
        "concretizer": {"unify": True},
        "config": {"install_tree": {"root": INSTALL_ROOT}},
    }
    if packages:
        document["packages"] = packages
    return {"spack": document}


def spack_yaml(env: dict[str, Any]) -> str:
    """spack.yaml's text (stable key order: the text is part of the image's hash)."""
    return yaml.safe_dump(environment(env), sort_keys=False, default_flow_style=False)


def install_script() -> str:
    """The build step that installs the environment copied to ``ENV_DIR/spack.yaml``."""
    return "\n".join([
        f"if [ -f {SETUP_ENV} ]; then . {SETUP_ENV}; fi",
        f"spack -e {ENV_DIR} concretize",
        f"spack -e {ENV_DIR} install --fail-fast",
        f"spack env activate --sh -d {ENV_DIR} > {ACTIVATE}",
    ])  # fmt: skip
