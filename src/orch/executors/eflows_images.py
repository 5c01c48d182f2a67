"""The built-in executors ``eflows-image`` and ``eflows-image-transfer``: eFlows4HPC's
``imagecreation.ansible.nodes.ImageCreation`` and ``dls.ansible.nodes.DLSDAGImageTransfer``,
done by orch instead of the Image Creation service and the Data Logistics Service.

``eflows-image`` (``Standard.start`` when ``run_in_standard_mode``, ``Runnable.submit``) builds
the image of a workflow registry's step on orch's machine with orch's image machinery
(``orch.images``): named by content hash, cached, rebuilt only when asked (``force``, or
``orch deploy --force-rebuild``). The Task contract:

- ``inputs`` (as the type declares them, else the same ``properties``): ``workflow``,
  ``step_id``, ``machine`` (platform, architecture, container_engine, mpi, gpu), ``force``,
  ``machine_*_from_env`` (each overrides its machine field when not empty, as
  ``submit_imagecreation_tasks.yaml`` does), ``run_in_standard_mode``; ``password`` is masked.
- ``environment["ORCH_REGISTRY"]``: the registry (folder or git URL), else the site's
  ``registry`` setting; ``environment["ORCH_IMAGE_BASE"]``: a base for recipes naming none.
- outputs: ``image_id`` and ``filename`` (the image's file name, content hash in it),
  ``image_path`` (in orch's cache), ``image_hash`` (content hash), ``image_sha256`` (the
  file's), ``built``, ``TOSCA_JOB_ID``, ``TOSCA_JOB_STATUS``.

``eflows-image-transfer`` (same operations) places that image on the bound site (``host``):

- ``related``: the requirement (``dependency`` first) whose target has ``image_path`` or
  ``image_id`` (the ImageCreation node's attributes).
- ``inputs``/``properties`` as ``submit_dag_image_transfer.yaml`` reads them: ``image_id`` <
  ``image_id_input`` < the built file's name (``builded_file_name_start``/``_run``, or the
  related ``image_id``); ``target_path`` < ``target_path_input`` (a folder: the file goes in
  it under its ``image_id``; ``{{ login }}``/``{{ user_id }}`` become the login, ``login`` <
  ``login_input``, else the site's user; relative: under the home; empty: the site's
  ``<work_dir>/images``).
- outputs: ``image_file_path`` (what a PyCOMPSs job's container image is), ``transferred``,
  ``image_id``, ``execution_url``, ``TOSCA_JOB_ID``, ``TOSCA_JOB_STATUS``.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from pathlib import Path
from typing import Any

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin, expand_home, resolve_on_site, site_default
from orch.executors.images import site_images
from orch.executors.masking import Masker
from orch.images import eflows
from orch.images.build import BuildResult
from orch.images.cache import cache_root, read_digest, size_text
from orch.images.job import plan
from orch.images.local import ensure_local
from orch.images.place import probe, upload
from orch.images.spack import SpackError
from orch.images.spec import ImageError
from orch.transport.base import TransportError

SECRET_WORDS = ("password", "passwd", "token", "secret")
WORKING = ("start", "submit")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
LOGIN_NAMES = ("login", "user_id", "user", "username")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def as_bool(value: Any) -> bool:
    """Ansible's ``bool`` filter."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y", "t")


def given(value: Any) -> bool:
    """Ansible's ``is defined and length > 0``."""
    return value is not None and str(value) != ""


def value_of(task: Task, name: str) -> Any:
    """An operation input, else the node's property of that name."""
    value = task.inputs.get(name)
    return value if given(value) else task.properties.get(name)


def works(task: Task) -> bool:
    """Runnable.submit works; Standard.start too unless ``run_in_standard_mode`` is false
    (then its playbook does nothing); every other operation does nothing."""
    if task.operation == "submit":
        return True
    if task.operation == "start":
        mode = task.inputs.get("run_in_standard_mode",
                               task.properties.get("run_in_standard_mode"))
        return mode is None or as_bool(mode)
    return False


def secrets_of(task: Task, *extra: str) -> list[str]:
    found = [str(s) for s in task.secret_values if s]
    for source in (task.inputs, task.properties):
        for key, value in source.items():
            if any(word in str(key).lower() for word in SECRET_WORDS) and given(value):
                found.append(str(value))
    return found + [e for e in extra if e]


class _Base:
    name = ""
    kinds = ""

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        """The operation, with secrets masked in what it logs and returns."""
        mask = Masker(secrets_of(task, *self.more_secrets(task)))
        masked = dataclasses.replace(context, log=mask.sink(context.log))
        return mask.result(self._run(task, masked))

    def more_secrets(self, task: Task) -> list[str]:
        return []

    def _run(self, task: Task, context: RunContext) -> OperationResult:
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        if not works(task):
            return OperationResult("ok", rc=0)  # run (nothing to poll), stop, delete...
        try:
            return self.work(task, context)
        except (ImageError, SpackError) as exc:
            if context.cancel.is_set():
                return OperationResult("cancelled", message="cancelled", started=False)
            # a registry without the step, a recipe or build error: no lost connection, the
            # same answer on a new one (started=False would have the engine retry it)
            return OperationResult("failed", message=str(exc))
        except TransportError as exc:
            return OperationResult("failed", message=str(exc), started=exc.started)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            return OperationResult("failed", message=f"cannot use{where}: {exc.strerror or exc}")

    def work(self, task: Task, context: RunContext) -> OperationResult:  # pragma: no cover
        raise NotImplementedError


class EflowsImageExecutor(_Base):
    """Builds an eFlows4HPC workflow step's image (ImageCreation) on orch's machine."""

    name = "eflows-image"
    kinds = ("orch.artifacts.Builtin 'eflows-image' (eFlows4HPC ImageCreation: a workflow "
             "registry step's container image)")  # fmt: skip

    def more_secrets(self, task: Task) -> list[str]:
        try:
            location = eflows.registry_location(task.environment, task.site)
        except ImageError:
            return []
        return eflows.url_secrets(location)

    def work(self, task: Task, context: RunContext) -> OperationResult:
        def say(line: str) -> None:
            context.log("stdout", line)

        location = eflows.registry_location(task.environment, task.site)
        registry = eflows.open_registry(location, say, context.cancel)
        recipe = eflows.read_recipe(registry, value_of(task, "workflow"),
                                    value_of(task, "step_id"), eflows.shown(location))
        machine = eflows.machine_of(task.inputs, task.properties)
        eflows.check_platform(machine)
        builder = eflows.builder_of(machine, site_default(task, "container_runtime"))
        spack = eflows.spack_environment(recipe, machine)
        base = task.environment.get(eflows.BASE_ENV) or site_default(task, "image_base")
        props = eflows.image_properties(recipe, machine, builder=builder, base=base,
                                        confine=eflows.is_git_url(location))
        for line in eflows.say_lines(recipe, machine, spack):
            say(line)
        image_task = dataclasses.replace(
            task, properties=props, base_dir=str(recipe.folder),
            related={"spack_environment": spack} if spack else {},
        )  # fmt: skip
        force = as_bool(value_of(task, "force") or False)
        run = dataclasses.replace(context, force_rebuild=context.force_rebuild or force)
        job = plan(image_task, run)
        job.site_name = None  # built and kept on orch's machine: the transfer node places it
        local = ensure_local(job)
        if isinstance(local, BuildResult):
            return OperationResult(local.status, rc=local.rc, stdout_tail=local.tail,
                                   message=local.message)  # fmt: skip
        return OperationResult("ok", rc=0, outputs={
            "image_id": job.file, "filename": job.file, "image_path": str(local.path),
            "image_hash": job.digest, "image_sha256": local.sha256,
            "built": _flag(local.built), "TOSCA_JOB_ID": job.label,
            "TOSCA_JOB_STATUS": "COMPLETED",
        })  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Built:
    """The image a transfer places: its file on orch's machine and its name on the site."""

    path: Path
    image_id: str
    sha256: str
    size: int


def built_image(task: Task) -> Built:
    """The image of the ImageCreation node the transfer depends on (see the module's doc)."""
    candidates = [(name, target) for name, target in task.related.items()
                  if isinstance(target, dict)
                  and (given(target.get("image_path")) or given(target.get("image_id")))]
    candidates.sort(key=lambda pair: pair[0] != "dependency")
    if len(candidates) > 1 and candidates[0][0] != "dependency":
        names = ", ".join(name for name, _ in candidates)
        raise ImageError(f"the image transfer depends on several images ({names}): name the "
                         "one to transfer with the requirement `dependency`")
    target = candidates[0][1] if candidates else {}
    image_id = ""
    for value in (task.properties.get("image_id"), task.inputs.get("image_id"),
                  task.inputs.get("image_id_input"), target.get("image_id"),
                  task.inputs.get("builded_file_name_start"),
                  task.inputs.get("builded_file_name_run")):  # fmt: skip
        if given(value):
            image_id = str(value)
    path_text = str(target.get("image_path") or "")
    if path_text:
        path = Path(path_text)
        image_id = image_id or path.name
    elif image_id:
        path = cache_root() / Path(image_id).name
    else:
        raise ImageError("no image to transfer: the DLSDAGImageTransfer node needs a "
                         "`dependency` requirement on the ImageCreation node that builds it "
                         "(or an image_id of an image in orch's cache)")
    if "/" in image_id or image_id in ("", ".", ".."):
        raise ImageError(f"image_id {image_id!r} is not a file name")
    if not path.is_file():
        raise ImageError(f"image {image_id} is not in orch's image cache ({path}): orch "
                         "transfers the images it builds (deploy the ImageCreation node it "
                         "depends on); downloads from an Image Creation service are not done")
    sha = str(target.get("image_sha256") or "")
    size = path.stat().st_size
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        sha, size = read_digest(path)
    return Built(path, image_id, sha, size)


def fill_login(path: str, login: str) -> str:
    """``{{ login }}``-style placeholders of a target path replaced by the login."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) in LOGIN_NAMES:
            if not login:
                raise ImageError(f"target_path {path} needs a login (user_id) for "
                                 f"{match.group(0)}")
            return login
        raise ImageError(f"target_path {path}: orch cannot fill {match.group(0)} "
                         f"(only {{{{ login }}}} / {{{{ user_id }}}})")
    return _PLACEHOLDER.sub(one, path)


class EflowsImageTransferExecutor(_Base):
    """Places an ImageCreation node's image on a site (DLSDAGImageTransfer)."""

    name = "eflows-image-transfer"
    kinds = ("orch.artifacts.Builtin 'eflows-image-transfer' (eFlows4HPC DLSDAGImageTransfer: "
             "an ImageCreation image to a site)")  # fmt: skip

    def work(self, task: Task, context: RunContext) -> OperationResult:
        def say(line: str) -> None:
            context.log("stdout", line)

        image = built_image(task)
        transport = context.transport(task.host)
        login = ""
        for value in (task.properties.get("user_id"), task.inputs.get("login"),
                      task.inputs.get("login_input")):  # fmt: skip
            if given(value):
                login = str(value)
        login = login or task.host.user or ""
        raw = ""
        for value in (task.properties.get("target_path"), task.inputs.get("target_path"),
                      task.inputs.get("target_path_input")):  # fmt: skip
            if given(value):
                raw = str(value)
        raw = fill_login(raw, login).rstrip("/") if raw else ""
        if not raw:
            folder = site_images(task, transport)
        elif "$" in raw:
            environment = {str(k): str(v)
                           for k, v in (site_default(task, "environment") or {}).items()}
            folder = expand_home(resolve_on_site(raw, transport, environment), transport)
        else:
            folder = expand_home(raw, transport)
        remote = posixpath.join(folder, image.image_id)
        where = task.site.name if task.site is not None else task.host.describe()
        if task.host.is_local:
            say("no site bound to the transfer: the image is placed on orch's machine")
        found = probe(transport, remote, image.size)
        if found is not None and found.sha256 == image.sha256:
            say(f"image {image.image_id} already on {where}: not transferred ({remote})")
            transferred = False
        else:
            why = "differs there" if found is not None else "not there yet"
            say(f"transferring image {image.image_id} ({size_text(image.size)}) to "
                f"{where}:{remote} ({why})")  # fmt: skip
            upload(transport, str(image.path), remote, image.sha256)
            say(f"image {image.image_id} on {where}: sha256 checked")
            transferred = True
        url = (f"sftp://{task.host.describe()}{remote}" if not task.host.is_local
               else f"file://{remote}")  # fmt: skip
        return OperationResult("ok", rc=0, outputs={
            "image_file_path": remote, "transferred": _flag(transferred),
            "image_id": image.image_id, "image_sha256": image.sha256, "execution_url": url,
            "TOSCA_JOB_ID": f"{login or 'orch'}-{image.image_id}",
            "TOSCA_JOB_STATUS": "COMPLETED",
        })  # fmt: skip


def all_executors() -> list[Any]:
    """Both executors (what ``orch.executors.registry`` registers)."""
    return [EflowsImageExecutor(), EflowsImageTransferExecutor()]


__all__ = ["EflowsImageExecutor", "EflowsImageTransferExecutor", "all_executors", "built_image",
           "fill_login"]
