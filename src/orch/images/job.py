"""One image operation's inputs, worked out once: the image's settings, its build folder,
its content hash and file name, and where its messages go."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orch.images import easybuild
from orch.images.cache import content_hash, image_file
from orch.images.context import BuildContext, compose
from orch.images.spec import ImageSpec, image_spec
from orch.remote import LogSink, SiteTask, site_default
from orch.transport.base import OPERATION_ENV, Host


class ImageTask(SiteTask, Protocol):
    """What an image operation reads of its task (``orch.executors.base.Task`` is one)."""

    @property
    def related(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def base_dir(self) -> str | None: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def host(self) -> Host: ...

    @property
    def environment(self) -> Mapping[str, str]:
        """orch's variables, the operation's token (``OPERATION_ENV``) among them."""
        ...


class ImageRun(Protocol):
    """What an image operation uses of the engine's ``orch.executors.base.RunContext``."""

    @property
    def cancel(self) -> threading.Event: ...

    @property
    def log(self) -> LogSink: ...

    @property
    def force_rebuild(self) -> bool: ...


@dataclass
class ImageJob:
    spec: ImageSpec
    context: BuildContext
    digest: str
    file: str
    """``<image_name>-<hash[:12]>.sif``: the same name in the cache and on sites."""
    run: ImageRun
    timeout: float | None
    site_name: str | None
    """The site the image is placed on (None: it stays on orch's machine)."""
    operation: str | None = None
    """The operation's token: the build's processes carry it, so that a resumed run finds a
    build the killed orch left running (and waits for it) instead of building twice."""

    @property
    def label(self) -> str:
        """The image as log lines name it: ``app-1a2b3c4d5e6f``."""
        return self.file.rsplit(".", 1)[0]

    @property
    def cancel(self) -> threading.Event:
        return self.run.cancel

    @property
    def force(self) -> bool:
        return self.run.force_rebuild

    def say(self, line: str) -> None:
        """A line of orch's own in the operation's log."""
        self.run.log("stdout", line)


def plan(task: ImageTask, run: ImageRun) -> ImageJob:
    """Everything an operation on a ContainerImage needs (raises ImageError, SpackError)."""
    spack = task.related.get("spack_environment")
    spec = image_spec(task.properties, task.node, task.base_dir, spack,
                      site_default(task, "container_runtime"))  # fmt: skip
    if spec.easybuild is not None:
        spec = easybuild.apply(spec, lambda line: run.log("stdout", line), run.cancel,
                               task.timeout, force=run.force_rebuild)  # fmt: skip
    context = compose(spec, task.base_dir)
    digest = content_hash(spec, context)
    site = None
    if not task.host.is_local:
        site = task.site.name if task.site is not None else task.host.describe()
    return ImageJob(spec, context, digest, image_file(spec, digest), run, task.timeout, site,
                    task.environment.get(OPERATION_ENV))
