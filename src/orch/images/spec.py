"""What a ``orch.nodes.ContainerImage`` asks for, read from the node's evaluated properties,
its Spack environment and the site's defaults, with every choice made and checked once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILDERS = ("apptainer", "podman")
FORMATS = ("sif", "oci-archive")
SPACK_BASE = "spack/ubuntu-jammy:latest"
"""The default base of Spack images: Spack's own image, with Spack on PATH."""


class ImageError(ValueError):
    """A ContainerImage's properties cannot make an image (said in one line)."""


@dataclass(frozen=True)
class ImageSpec:
    """One image's settings, defaults applied."""

    name: str
    """Safe for file names and image tags (lower case)."""
    builder: str
    format: str
    build_on: str
    base: str | None
    recipe: str | None
    post: tuple[str, ...] = ()
    files: tuple[tuple[Path, str], ...] = ()
    """(local file or folder, path in the image)."""
    environment: dict[str, str] = field(default_factory=dict)
    runscript: str | None = None
    keep_on_site: bool = True
    spack: dict[str, Any] | None = None
    """The SpackEnvironment's properties, when the image is built from one."""
    easybuild: Any = None
    """The EasyBuild easyconfigs (``orch.images.easybuild.EasyBuildSpec``), if any."""

    @property
    def extension(self) -> str:
        return ".sif" if self.format == "sif" else ".tar"


def safe_name(name: str) -> str:
    """A name usable in a file name and as an image tag."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-._")
    return cleaned or "image"


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    text = str(value)
    if text not in allowed:
        raise ImageError(f"{what} must be one of {', '.join(allowed)}, not {text!r}")
    return text


def _files(files: Any, base_dir: Path) -> tuple[tuple[Path, str], ...]:
    if files in (None, {}):
        return ()
    if not isinstance(files, dict):
        raise ImageError("files must be a map: local path -> path in the image")
    pairs = []
    for local, target in files.items():
        path = Path(os.path.abspath(base_dir / Path(str(local)).expanduser()))
        if not path.exists():
            raise ImageError(f"files: {local} does not exist (looked at {path})")
        if not str(target).startswith("/"):
            raise ImageError(f"files: the path in the image for {local} must be absolute")
        pairs.append((path, str(target)))
    return tuple(pairs)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ImageError(f"{what} must be a list of shell commands")
    return tuple(str(v) for v in value)


def _defaults(props: dict[str, Any], site_runtime: str | None) -> tuple[str, str]:
    builder = _choice(props.get("builder") or site_runtime or "apptainer", BUILDERS, "builder")
    fmt = props.get("format") or ("sif" if builder == "apptainer" else "oci-archive")
    fmt = _choice(fmt, FORMATS, "format")
    if builder == "apptainer" and fmt != "sif":
        raise ImageError("apptainer builds SIF images only: use format sif, or builder podman")
    return builder, fmt


def image_spec(
    props: dict[str, Any],
    node: str,
    base_dir: str | None,
    spack: dict[str, Any] | None = None,
    site_runtime: str | None = None,
) -> ImageSpec:
    """The image a node describes (raises ImageError saying what is wrong)."""
    from orch.images.easybuild import easybuild_spec  # it imports this module

    builder, fmt = _defaults(props, site_runtime)
    recipe = props.get("recipe") or None
    base = props.get("base") or (SPACK_BASE if spack else None)
    if recipe is None and base is None:
        raise ImageError("give the image a base (or a recipe, or a Spack environment)")
    folder = Path(base_dir or ".")
    return ImageSpec(
        name=safe_name(str(props.get("image_name") or node)),
        builder=builder,
        format=fmt,
        build_on=_choice(props.get("build_on") or "local", ("local", "site"), "build_on"),
        base=str(base) if base else None,
        recipe=str(recipe) if recipe else None,
        post=_strings(props.get("post"), "post"),
        files=_files(props.get("files"), folder),
        environment={str(k): str(v) for k, v in (props.get("environment") or {}).items()},
        runscript=str(props["runscript"]) if props.get("runscript") else None,
        keep_on_site=props.get("keep_on_site") is not False,
        spack=dict(spack) if spack else None,
        easybuild=easybuild_spec(props, folder),
    )
