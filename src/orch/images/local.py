"""Images built on orch's machine, into the local cache (one build per image at a time)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orch.images.build import BuildResult, build_command, run_build, temporary_name
from orch.images.cache import cache_root, locked, read_digest, size_text, write_digest
from orch.images.job import ImageJob
from orch.transport.local import LocalTransport


@dataclass(frozen=True)
class LocalImage:
    path: Path
    sha256: str
    size: int
    built: bool


def ensure_local(job: ImageJob) -> LocalImage | BuildResult:
    """The image in the cache, built unless it is there already (or rebuilding is forced);
    a failed or stopped build is returned as such."""
    root = cache_root()
    final = root / job.file
    with locked(root / f".{job.file}.lock", job.cancel) as held:
        if not held:
            return BuildResult(False, "cancelled", None, "cancelled while waiting for "
                               f"another build of {job.label}")  # fmt: skip
        if final.is_file() and not job.force:
            sha, size = read_digest(final)
            job.say(f"image {job.label} unchanged: not rebuilt (in the cache: {final})")
            return LocalImage(final, sha, size, built=False)
        why = "rebuilding as asked (--force-rebuild)" if final.is_file() else "not in the cache"
        job.say(f"building image {job.label} with {job.spec.builder} on localhost ({why})")
        built = _build(job, final)
        if isinstance(built, BuildResult):
            return built
        job.say(f"image {job.label} built: {final} ({size_text(built[1])})")
        return LocalImage(final, built[0], built[1], built=True)


def _build(job: ImageJob, final: Path) -> tuple[str, int] | BuildResult:
    final.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".build-{job.label}-", dir=final.parent))
    output = temporary_name(str(final))
    try:
        job.context.write(folder)
        command = build_command(job.spec, job.digest, output, force=job.force)
        result = run_build(LocalTransport(), command, str(folder), job.run.log, job.cancel,
                           job.timeout, "localhost", job.operation)  # fmt: skip
        if not result.ok:
            return result
        os.replace(output, final)
        return write_digest(final)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(output):
            os.remove(output)
