"""Images on orch's machine, named by a hash of everything that makes them.

The content hash covers the builder, the format, the recipe, the generated files and the bytes
(and executable bits) of every copied file, local base images included: an image whose hash
is already in the cache is the same image, so it is not built again. A base named by a
registry reference counts by its name only (use ``--force-rebuild`` after a moving tag moved).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from orch.images.context import BuildContext
from orch.images.spec import ImageSpec

HASH_VERSION = 1
"""Bumped when what goes into the hash changes, so that old names cannot be mistaken."""
CHUNK = 1 << 20


def cache_root(env: dict[str, str] | None = None) -> Path:
    """``$ORCH_CACHE_HOME/images``, else ``$XDG_CACHE_HOME/orch/images``, else
    ``~/.cache/orch/images``."""
    env = dict(os.environ) if env is None else env
    if env.get("ORCH_CACHE_HOME"):
        return Path(env["ORCH_CACHE_HOME"]).expanduser() / "images"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "orch" / "images"
    return Path.home() / ".cache" / "orch" / "images"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tree(path: Path) -> object:
    """A file's or folder's content, canonical: sha256 and executable bit per file."""
    if path.is_symlink():
        return {"link": os.readlink(path)}
    if path.is_dir():
        return {entry.name: _tree(entry) for entry in sorted(path.iterdir())}
    return {"sha256": file_sha256(path), "x": bool(path.stat().st_mode & 0o111)}


def content_hash(spec: ImageSpec, context: BuildContext) -> str:
    """The sha256 (hex) of everything that determines the image."""
    canonical = {
        "version": HASH_VERSION,
        "builder": spec.builder,
        "format": spec.format,
        "recipe": [context.recipe_name, context.recipe],
        "texts": {name: [text, mode] for name, (text, mode) in context.texts.items()},
        "files": {name: _tree(path) for name, path in context.files.items()},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def image_file(spec: ImageSpec, digest: str) -> str:
    """``<image_name>-<hash[:12]>.sif`` (or ``.tar`` for an OCI archive)."""
    return f"{spec.name}-{digest[:12]}{spec.extension}"


def read_digest(image: Path) -> tuple[str, int]:
    """An image's sha256 and size, from its record beside it (hashed again if missing)."""
    record = image.with_name(image.name + ".sha256")
    size = image.stat().st_size
    with contextlib.suppress(OSError, ValueError):
        sha, recorded = record.read_text().split()
        if int(recorded) == size:
            return sha, size
    return write_digest(image)


def write_digest(image: Path) -> tuple[str, int]:
    """Record an image's sha256 and size beside it (so later deploys need not hash it)."""
    sha, size = file_sha256(image), image.stat().st_size
    record = image.with_name(image.name + ".sha256")
    temporary = record.with_name(f".{record.name}.{os.getpid()}")
    temporary.write_text(f"{sha} {size}\n")
    os.replace(temporary, record)
    return sha, size


@contextlib.contextmanager
def locked(path: Path, cancel: threading.Event) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (one build per image at a time, across processes);
    yields False when cancelled while waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel.wait(0.2):
                    yield False
                    return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def size_text(size: int) -> str:
    """A size for log lines (1.2 MB)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"

