"""Images built on a site's login node (``build_on: site``): the build folder is uploaded,
the site's builder runs there, and the image stays in the site's image folder."""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orch.images.build import BuildResult, build_command, run_build, temporary_name
from orch.images.job import ImageJob
from orch.images.place import probe
from orch.remote import SiteTask, environment_lines, module_lines, site_default
from orch.transport.base import Transport


@dataclass(frozen=True)
class SiteImage:
    path: str
    sha256: str | None
    built: bool


def _upload_folder(transport: Transport, local: Path, remote: str) -> None:
    for folder, _dirs, files in os.walk(local):
        relative = os.path.relpath(folder, local)
        target = remote if relative == "." else posixpath.join(remote, Path(relative).as_posix())
        transport.makedirs(target)
        for name in files:
            transport.put(os.path.join(folder, name), posixpath.join(target, name))


def build_on_site(job: ImageJob, task: SiteTask, transport: Transport, images: str) -> (
        SiteImage | BuildResult):
    """The image in the site's image folder, built there unless it is there already."""
    final = posixpath.join(images, job.file)
    found = None if job.force else probe(transport, final)
    if found is not None:
        job.say(f"image {job.label} already on {job.site_name}: not rebuilt ({final})")
        return SiteImage(final, found.sha256, built=False)
    job.say(f"building image {job.label} with {job.spec.builder} on {job.site_name}")
    remote = posixpath.join(images, f".build-{job.label}-{secrets.token_hex(4)}")
    with tempfile.TemporaryDirectory(prefix="orch-image-") as local:
        job.context.write(Path(local))
        _upload_folder(transport, Path(local), remote)
    output = temporary_name(final)
    q = shlex.quote
    setup = [*module_lines(site_default(task, "modules")), *environment_lines(task)]
    command = "\n".join([*setup, build_command(job.spec, job.digest, output, force=job.force)
                         + f" && mv -f {q(output)} {q(final)}"])  # fmt: skip
    try:
        result = run_build(transport, command, remote, job.run.log, job.cancel, job.timeout,
                           job.site_name or transport.host, job.operation)  # fmt: skip
    finally:
        transport.run(f"rm -rf {q(remote)} {q(output)}")
    if not result.ok:
        return result
    found = probe(transport, final)
    job.say(f"image {job.label} built on {job.site_name}: {final}")
    return SiteImage(final, found.sha256 if found else None, built=True)
