"""The base image an image starts from, as each builder names it.

Apptainer names a source by its bootstrap agent (``docker``, ``localimage``, ``oras``...);
podman by a ``FROM`` reference, where local archives are ``docker-archive:``/``oci-archive:``.
A local base file is copied into the build folder and named relatively, so that the same
recipe builds on orch's machine and on a site.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orch.images.spec import ImageError

SCHEMES = ("docker", "oras", "library", "shub", "docker-daemon")
"""``scheme://ref`` sources both name the same way (Apptainer's agents)."""
ARCHIVES = ("docker-archive", "oci-archive", "localimage")
CONTEXT_DIR = "base-image"


@dataclass(frozen=True)
class Base:
    kind: str
    """Apptainer's bootstrap agent: scratch, docker, localimage, docker-archive..."""
    source: str
    """What follows ``From:`` (empty for scratch)."""
    local_file: Path | None = None
    """A base file on orch's machine (copied into the build folder as ``source``)."""

    def from_line(self) -> str:
        """The Dockerfile ``FROM`` value."""
        if self.kind in ("scratch", "docker"):
            return self.source or "scratch"
        if self.kind in ("docker-archive", "oci-archive"):
            return f"{self.kind}:{self.source}"
        raise ImageError(f"podman cannot start from a {self.kind} base ({self.source}): "
                         "use builder apptainer, or an OCI/Docker archive or image as base")


def _local(kind: str, path: str, base_dir: Path | None) -> Base:
    if base_dir is None:  # a recipe's own reference: relative to the build folder
        return Base(kind, path)
    file = Path(path).expanduser()
    file = file if file.is_absolute() else base_dir / file
    if not file.is_file():
        raise ImageError(f"base image {path} not found (looked at {file})")
    return Base(kind, f"{CONTEXT_DIR}/{file.name}", file.resolve())


def parse_base(text: str, base_dir: Path | None) -> Base:
    """A base as users write it: ``scratch``, ``docker://ref`` or a plain image reference,
    ``oras://ref``, ``docker-archive:FILE``, ``oci-archive:FILE``, or a ``.sif`` file."""
    text = text.strip()
    if text == "scratch":
        return Base("scratch", "")
    scheme, sep, rest = text.partition("://")
    if sep and scheme in SCHEMES:
        return Base(scheme, rest)
    kind, sep, rest = text.partition(":")
    if sep and kind in ARCHIVES:
        return _local(kind, rest, base_dir)
    if text.endswith(".sif") or text.startswith(("/", "./", "../", "~")):
        return _local("localimage", text, base_dir)
    return Base("docker", text)
