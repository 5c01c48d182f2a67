"""Container images (``orch.nodes.ContainerImage``): ``create`` builds the image, on orch's
machine into its cache or on the site's login node, then places it on the site that hosts
it; ``delete`` removes the site's copy unless ``keep_on_site``.

Nothing is done twice: an image whose content hash is in the cache is not rebuilt, and one
already on the site (same name, size and sha256) is not uploaded again, unless
``orch deploy --force-rebuild``. The outputs (image_path, image_hash, built, transferred)
become the node's attributes.
"""

from __future__ import annotations

import dataclasses
import posixpath

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin, remove_if_empty, work_root
from orch.executors.masking import Masker
from orch.images.build import BuildResult
from orch.images.cache import size_text
from orch.images.job import ImageJob, plan
from orch.images.local import LocalImage, ensure_local
from orch.images.place import probe, remove, upload
from orch.images.site import build_on_site
from orch.images.spack import SpackError
from orch.images.spec import ImageError
from orch.transport.base import Transport, TransportError

IMAGES_DIR = "images"
"""Folder of the site's work_dir that holds the images."""


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _outputs(job: ImageJob, path: str, built: bool, transferred: bool) -> OperationResult:
    return OperationResult("ok", rc=0, outputs={
        "image_path": path, "image_hash": job.digest,
        "built": _flag(built), "transferred": _flag(transferred),
    })  # fmt: skip


def _failed(result: BuildResult) -> OperationResult:
    return OperationResult(result.status, rc=result.rc, stdout_tail=result.tail,
                           message=result.message)  # fmt: skip


def site_images(task: Task, transport: Transport) -> str:
    """``<site work_dir>/images``, absolute."""
    return posixpath.join(work_root(task, transport), IMAGES_DIR)


def _place(job: ImageJob, image: LocalImage, transport: Transport, remote: str) -> bool:
    """Put a cached image on the site unless the same file is there; whether it was sent."""
    found = None if job.force else probe(transport, remote, image.size)
    if found is not None and found.sha256 == image.sha256:
        job.say(f"image {job.label} already on {job.site_name}: not transferred ({remote})")
        return False
    why = "differs there" if found is not None else "not there yet"
    if job.force:
        why = "--force-rebuild"
    job.say(f"transferring image {job.label} ({size_text(image.size)}) to "
            f"{job.site_name}:{remote} ({why})")  # fmt: skip
    upload(transport, str(image.path), remote, image.sha256)
    job.say(f"image {job.label} on {job.site_name}: sha256 checked")
    return True


def create(task: Task, context: RunContext) -> OperationResult:
    """Build (or find) the image, then place it on its site."""
    job = plan(task, context)
    transport = context.transport(task.host) if job.site_name else None
    if job.spec.build_on == "site":
        if transport is None:
            raise ImageError("build_on: site needs the site: give the image a host requirement")
        built = build_on_site(job, task, transport, site_images(task, transport))
        if isinstance(built, BuildResult):
            return _failed(built)
        return _outputs(job, built.path, built.built, transferred=False)
    local = ensure_local(job)
    if isinstance(local, BuildResult):
        return _failed(local)
    if transport is None:
        return _outputs(job, str(local.path), local.built, transferred=False)
    remote = posixpath.join(site_images(task, transport), job.file)
    return _outputs(job, remote, local.built, _place(job, local, transport, remote))


def delete(task: Task, context: RunContext) -> OperationResult:
    """Remove the site's copy, unless keep_on_site (the cache on orch's machine stays)."""
    if task.properties.get("keep_on_site") is not False or task.host.is_local:
        return OperationResult("ok", rc=0)
    try:
        job = plan(task, context)
    except (ImageError, SpackError, OSError) as exc:
        # the image's name needs its inputs: without them, undeploy goes on all the same
        context.log("stderr", f"cannot tell which image to remove ({exc}): left on the site")
        return OperationResult("ok", rc=0)
    transport = context.transport(task.host)
    folder = site_images(task, transport)
    remote = posixpath.join(folder, job.file)
    if remove(transport, remote):
        job.say(f"image {job.label} removed from {job.site_name} ({remote})")
    else:
        job.say(f"image {job.label} was not on {job.site_name} ({remote})")
    transport.run(remove_if_empty(folder))  # the last image gone: no empty folder left
    return OperationResult("ok", rc=0)


OPERATIONS = {"create": create, "delete": delete}


class ImageExecutor:
    """Builds container images and places them on sites."""

    name = "image"
    kinds = "orch.artifacts.Builtin 'image' (container images: create, delete)"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        """The operation, with secrets masked in what it logs and returns (build logs)."""
        mask = Masker(task.secret_values)
        masked = dataclasses.replace(context, log=mask.sink(context.log))
        return mask.result(self._run(task, masked))

    def _run(self, task: Task, context: RunContext) -> OperationResult:
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        operation = OPERATIONS.get(task.operation)
        if operation is None:
            return OperationResult("ok", rc=0)  # configure, start...: nothing to do
        try:
            return operation(task, context)
        except (ImageError, SpackError) as exc:
            return OperationResult("failed", message=str(exc), started=False)
        except TransportError as exc:
            return OperationResult("failed", message=str(exc), started=exc.started)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            return OperationResult("failed", message=f"cannot use{where}: {exc.strerror or exc}")
