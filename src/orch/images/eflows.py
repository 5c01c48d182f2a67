"""eFlows4HPC image recipes: a workflow registry's step (``<registry>/<workflow>/<step_id>/``
holding ``spack.yaml`` or ``eflows4hpc.yaml``, and ``src/``) and a target machine, turned into
the properties of an ``orch.nodes.ContainerImage`` that ``orch.images.job.plan`` builds.

The registry is a folder on orch's machine, or a git repository (``URL`` or ``URL#ref``) cloned
with ``git clone --depth 1`` into ``<orch cache>/registries/<hash of URL>/<commit>`` once per
orch process (no prompt for credentials; when the repository cannot be reached, the last clone
is used, with a line saying so). A cloned recipe reads nothing of orch's machine outside its
step's folder but images of orch's cache; links out of the registry are refused.

The recipe's ``spack:`` document gives the Spack specs (and ``packages``); the machine
(``platform``, ``architecture``, ``container_engine``, ``mpi``, ``gpu``) gives the builder
(singularity/apptainer: apptainer, docker/podman: podman), the Spack target, MPI provider and
GPU variants. An optional ``orch:`` map in the recipe (an orch extension, which the Image
Creation service does not read) gives what Spack does not: ``base`` (the image to start from),
``post`` (build steps), ``environment``, ``runscript`` and ``files`` (step folder -> image).
A recipe without Spack specs is built without Spack: its base with ``src/`` (and ``files``).

EasyBuild (an orch extension): a step may hold an ``easybuild/`` folder of easyconfigs
(``easybuild/*.eb``, built together with ``eb --robot``, dependencies found among them) and
their source tarballs in ``easybuild/sources/``. The image then gets that software under
``/opt/easybuild`` with ``MODULEPATH`` set (see ``orch.images.easybuild``). ``orch: {easybuild:
{on: image|local, prefix: PATH, options: [...]}}`` in the recipe says where eb runs (default
``image``: the base image must have EasyBuild; ``local``: on orch's machine, copied in), the
install prefix and more eb options.
"""

from __future__ import annotations

import hashlib
import os
import platform as host_platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orch.images.base import parse_base
from orch.images.cache import cache_root, locked
from orch.images.spec import SPACK_BASE, ImageError

REGISTRY_ENV = "ORCH_REGISTRY"
"""``Task.environment`` entry: the workflow registry (``orch deploy --registry PATH|URL``)."""
BASE_ENV = "ORCH_IMAGE_BASE"
"""``Task.environment`` entry: the base image of recipes that name none."""
RECIPE_FILES = ("eflows4hpc.yaml", "eflows4hpc.yml", "spack.yaml", "spack.yml")
"""Looked up in this order, names compared without case (the registry's README writes
``eflows4HPC.yaml``)."""
RECIPE_MAX_BYTES = 1 << 20
CLONE_TIMEOUT = 600.0
ENGINES = {"singularity": "apptainer", "apptainer": "apptainer", "docker": "podman",
           "podman": "podman"}  # fmt: skip
ARCHES = {"amd64": "x86_64", "x86_64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64",
          "aarch64": "aarch64", "ppc64le": "ppc64le", "riscv64": "riscv64"}  # fmt: skip
NONE_WORDS = ("", "none", "no", "false", "off", "null")
EASYBUILD_DIR = "easybuild"
"""A step's folder of EasyBuild easyconfigs (``*.eb``), with their tarballs in ``sources/``."""
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

Log = Callable[[str], None]


# -- the registry -----------------------------------------------------------------------------


def registry_location(environment: Mapping[str, str], site: Any) -> str:
    """``ORCH_REGISTRY`` of the task's environment, else the site's ``registry`` setting,
    else ``ORCH_REGISTRY`` of orch's own environment."""
    given = str(environment.get(REGISTRY_ENV) or "").strip()
    if given:
        return given
    from_site = getattr(site, "registry", None) if site is not None else None
    if from_site:
        return str(from_site).strip()
    if os.environ.get(REGISTRY_ENV, "").strip():
        return os.environ[REGISTRY_ENV].strip()
    raise ImageError("no workflow registry to build eFlows4HPC images from: give one with "
                     "`orch deploy --registry PATH|URL` (a folder or a git URL holding "
                     "<workflow>/<step_id>/spack.yaml and src/), or set `registry` in the "
                     "site's entry of sites.yaml")  # fmt: skip


def is_git_url(location: str) -> bool:
    """A git URL (``scheme://``, ``user@host:path``, ``*.git``) rather than a local folder."""
    if "://" in location:
        return True
    if re.match(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:", location):
        return True
    return location.endswith(".git") and not Path(location).expanduser().is_dir()


def shown(location: str) -> str:
    """A registry as messages show it: without a password written into its URL."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:*****@", location)


def url_secrets(location: str) -> list[str]:
    """The password of ``scheme://user:password@host`` (to mask), if any."""
    match = re.search(r"://[^/@:]*:([^/@]*)@", location)
    return [match.group(1)] if match and match.group(1) else []


def registries_root() -> Path:
    """``<orch cache>/registries`` (beside the image cache)."""
    return cache_root().parent / "registries"


def open_registry(location: str, log: Log, cancel: threading.Event | None = None) -> Path:
    """The registry's folder on orch's machine: the folder itself, or a shallow clone (made
    once per orch process: the images of one deploy come from one commit)."""
    if not is_git_url(location):
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise ImageError(f"the workflow registry {location} is not a folder (give a folder "
                             "or a git URL with `orch deploy --registry PATH|URL`)")
        return folder.resolve()
    with _CLONING:
        known = _CLONED.get((str(registries_root()), location))
        if known is not None and known.is_dir():
            return known
        folder = _clone(location, log, cancel or threading.Event())
        _CLONED[(str(registries_root()), location)] = folder
        return folder


_CLONED: dict[tuple[str, str], Path] = {}
_CLONING = threading.Lock()
LATEST = "LATEST"


def _clone(location: str, log: Log, cancel: threading.Event) -> Path:
    """``<registries>/<hash of the location>/<commit>``: a folder per commit, never changed
    once made (a build reading one is not disturbed by a later clone); ``LATEST`` names the
    last one, used when the repository cannot be reached."""
    url, _, ref = location.partition("#")
    root = registries_root() / hashlib.sha256(location.encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".lock", cancel) as held:
        if not held:
            raise ImageError(f"cancelled while waiting for the clone of {shown(location)}")
        scratch = Path(tempfile.mkdtemp(prefix=".clone-", dir=root))
        try:
            log(f"cloning the workflow registry {shown(location)}")
            commit, why = _git_clone(url, ref, scratch / "clone", cancel)
            if commit is not None:
                final = root / commit
                if not final.is_dir():
                    os.replace(scratch / "clone", final)
                (root / LATEST).write_text(commit + "\n")
                log(f"workflow registry at commit {commit[:12]}")
                return final
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        why = shown(why.replace(url, location)) if why else "git failed"
        latest = root / ((root / LATEST).read_text().strip() if (root / LATEST).is_file()
                         else LATEST)  # fmt: skip
        if latest.name != LATEST and latest.is_dir():
            log(f"cannot refresh the workflow registry {shown(location)} ({why}): using the "
                f"clone of commit {latest.name[:12]} ({latest})")  # fmt: skip
            return latest
        raise ImageError(f"cannot clone the workflow registry {shown(location)}: {why}")


def _git_clone(url: str, ref: str, target: Path,
               cancel: threading.Event) -> tuple[str | None, str]:
    """(the commit cloned, or None and why not); stopped when ``cancel`` is set."""
    command = ["git", "clone", "--depth", "1", "--quiet"]
    if ref:
        command += ["--branch", ref]
    command += ["--", url, str(target)]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
           "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    except FileNotFoundError:
        return None, "git is not installed (apt-get install git)"
    deadline = time.monotonic() + CLONE_TIMEOUT
    while True:
        try:
            _, stderr = process.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if cancel.is_set() or time.monotonic() > deadline:
                process.kill()
                process.communicate()
                if cancel.is_set():
                    raise ImageError("cancelled while cloning the workflow registry") from None
                return None, f"no answer in {CLONE_TIMEOUT:g} s"
    if process.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        return None, lines[-1].strip() if lines else f"exit status {process.returncode}"
    head = subprocess.run(["git", "-C", str(target), "rev-parse", "HEAD"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    commit = head.stdout.strip()
    if head.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        return None, "the clone has no HEAD commit"
    return commit, ""


# -- a step's recipe --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    workflow: str
    step_id: str
    folder: Path
    """``<registry>/<workflow>/<step_id>``."""
    file: Path
    """spack.yaml or eflows4hpc.yaml."""
    specs: tuple[str, ...] = ()
    packages: dict[str, Any] = field(default_factory=dict)
    view: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    """The recipe's ``orch:`` map (base, post, environment, runscript, files)."""

    @property
    def easybuild(self) -> Path | None:
        """The step's ``easybuild/`` folder when it holds easyconfigs (``*.eb``)."""
        folder = self.folder / EASYBUILD_DIR
        if folder.is_dir() and any(folder.glob("*.eb")):
            return folder
        return None

    @property
    def src(self) -> Path | None:
        """The step's ``src/`` (a real folder: a link would copy what it points at)."""
        src = self.folder / "src"
        return src if src.is_dir() and not src.is_symlink() else None


def within(path: Path, folder: Path) -> bool:
    """Whether ``path``, links followed, is ``folder`` or inside it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _segment(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise ImageError(f"the ImageCreation node needs a {what} (property {what})")
    if not _SEGMENT.match(text) or text in (".", ".."):
        raise ImageError(f"{what} {text!r} is not a folder name of the workflow registry")
    return text


def _recipe_file(folder: Path) -> Path | None:
    names = {entry.name.lower(): entry for entry in folder.iterdir() if entry.is_file()}
    return next((names[name] for name in RECIPE_FILES if name in names), None)


def read_recipe(registry: Path, workflow: Any, step_id: Any, shown_registry: str) -> Recipe:
    """The recipe of ``<workflow>/<step_id>`` (raises ImageError naming what is missing)."""
    workflow, step_id = _segment(workflow, "workflow"), _segment(step_id, "step_id")
    folder = registry / workflow / step_id
    if not folder.is_dir():
        there = "the workflow exists" if (registry / workflow).is_dir() else "no such workflow"
        raise ImageError(f"workflow {workflow} step {step_id} is not in the workflow registry "
                         f"{shown_registry} (no folder {workflow}/{step_id}: {there})")
    if not within(folder, registry):
        raise ImageError(f"workflow {workflow} step {step_id}: {workflow}/{step_id} links out "
                         f"of the workflow registry {shown_registry}")
    file = _recipe_file(folder)
    if file is not None and not within(file, registry):
        raise ImageError(f"workflow {workflow} step {step_id}: {file.name} links out of the "
                         f"workflow registry {shown_registry}")
    if file is None:
        raise ImageError(f"workflow {workflow} step {step_id} in the workflow registry "
                         f"{shown_registry} has no recipe ({' or '.join(RECIPE_FILES[::2])})")
    if file.stat().st_size > RECIPE_MAX_BYTES:
        raise ImageError(f"{workflow}/{step_id}/{file.name} is too large for a recipe")
    try:
        document = yaml.safe_load(file.read_text("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ImageError(f"{workflow}/{step_id}/{file.name} is not YAML: "
                         f"{str(exc).splitlines()[0]}") from exc  # fmt: skip
    if not isinstance(document, dict):
        raise ImageError(f"{workflow}/{step_id}/{file.name} must be a map with `spack:`")
    env = document.get("spack") or {}
    extra = document.get("orch") or {}
    if not isinstance(env, dict) or not isinstance(extra, dict):
        raise ImageError(f"{workflow}/{step_id}/{file.name}: `spack:` and `orch:` must be maps")
    specs = env.get("specs") or []
    if not isinstance(specs, list):
        raise ImageError(f"{workflow}/{step_id}/{file.name}: spack specs must be a list")
    packages = env.get("packages") or {}
    if not isinstance(packages, dict):
        raise ImageError(f"{workflow}/{step_id}/{file.name}: spack packages must be a map")
    return Recipe(workflow, step_id, folder, file,
                  specs=tuple(str(s) for s in specs if str(s).strip()),
                  packages=packages, view=env.get("view", True) is not False,
                  extra=extra)  # fmt: skip


# -- the machine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    platform: str = ""
    architecture: str = ""
    container_engine: str = ""
    mpi: str = ""
    gpu: str = ""


def _given(value: Any) -> bool:
    return value is not None and str(value) != ""


def machine_of(inputs: Mapping[str, Any], properties: Mapping[str, Any]) -> Machine:
    """The target machine as ``submit_imagecreation_tasks.yaml`` computes it: the ``machine``
    input (else property), each field overridden by its ``machine_*_from_env`` input when that
    is not empty. The playbook reads the engine's override from a variable ``container_engine``
    (not the input ``machine_container_engine_from_env`` the type declares): both count."""
    raw = inputs.get("machine")
    if raw in (None, "", {}):
        raw = properties.get("machine")
    if isinstance(raw, str) and raw.strip():
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ImageError(f"machine is neither a map nor JSON text: {exc}") from exc
    machine = dict(raw) if isinstance(raw, dict) else {}
    if raw not in (None, "", {}) and not isinstance(raw, dict):
        raise ImageError("machine must be a map (platform, architecture, container_engine, "
                         "mpi, gpu)")
    overrides = {
        "platform": ("machine_platform_from_env",),
        "architecture": ("machine_architecture_from_env",),
        "container_engine": ("machine_container_engine_from_env", "container_engine"),
        "mpi": ("machine_mpi_from_env",),
        "gpu": ("machine_gpu_from_env",),
    }
    values = {}
    for key, names in overrides.items():
        value = machine.get(key)
        for name in names:
            if _given(inputs.get(name)):
                value = inputs[name]
        values[key] = "" if value is None else str(value).strip()
    return Machine(**values)


def builder_of(machine: Machine, site_runtime: str | None) -> str:
    engine = machine.container_engine.lower() or str(site_runtime or "apptainer").lower()
    if engine not in ENGINES:
        raise ImageError(f"machine container_engine {engine!r} is not one orch builds for "
                         f"(one of {', '.join(ENGINES)})")
    return ENGINES[engine]


def check_platform(machine: Machine) -> None:
    """orch builds on its own machine: a platform of another architecture cannot be built."""
    text = machine.platform.lower()
    if not text:
        return
    system, _, arch = text.partition("/")
    if system != "linux":
        raise ImageError(f"machine platform {machine.platform}: only linux images are built")
    local = ARCHES.get(host_platform.machine().lower(), host_platform.machine().lower())
    wanted = ARCHES.get(arch.split("/")[0], arch.split("/")[0]) if arch else local
    if wanted != local:
        raise ImageError(f"machine platform {machine.platform}: orch builds images on this "
                         f"machine ({local}) and does not cross-build for {wanted}")


def _gpu(text: str) -> str:
    word = text.lower()
    if word in NONE_WORDS:
        return "none"
    for prefix, gpu in (("cuda", "cuda"), ("nvidia", "cuda"), ("rocm", "rocm"),
                        ("amd", "rocm")):  # fmt: skip
        if word.startswith(prefix):
            return gpu
    raise ImageError(f"machine gpu {text!r}: orch knows none, cuda and rocm")


def spack_environment(recipe: Recipe, machine: Machine) -> dict[str, Any] | None:
    """A SpackEnvironment's properties (``orch.images.spack``) for the recipe on the machine,
    None when the recipe has no specs (no Spack in the image)."""
    if not recipe.specs:
        return None
    env: dict[str, Any] = {"specs": list(recipe.specs), "view": recipe.view}
    if recipe.packages:
        env["packages"] = recipe.packages
    if machine.architecture.lower() not in NONE_WORDS:
        env["target"] = machine.architecture
    if machine.mpi.lower() not in NONE_WORDS:
        env["mpi"] = machine.mpi
    gpu = _gpu(machine.gpu)
    if gpu != "none":
        env["gpu"] = gpu
    return env


def _inside(folder: Path, name: Any, recipe: Recipe) -> str:
    path = (folder / str(name)).resolve()
    try:
        path.relative_to(folder.resolve())
    except ValueError:
        raise ImageError(f"{recipe.workflow}/{recipe.step_id}/{recipe.file.name}: orch.files "
                         f"{name} is outside the step's folder") from None
    if not path.exists():
        raise ImageError(f"{recipe.workflow}/{recipe.step_id}/{recipe.file.name}: orch.files "
                         f"{name} does not exist")
    return str(path)


def _check_base(recipe: Recipe, text: str) -> None:
    """A base file named by a recipe of a cloned registry must be in the step's folder or in
    orch's image cache: such a recipe does not read other files of orch's machine."""
    parsed = parse_base(text, None)
    if parsed.kind not in ("localimage", "docker-archive", "oci-archive"):
        return
    path = recipe.folder / Path(parsed.source).expanduser()
    if within(path, recipe.folder) or within(path, cache_root()):
        return
    raise ImageError(f"{recipe.workflow}/{recipe.step_id}/{recipe.file.name}: orch.base "
                     f"{text} is outside the step's folder and orch's image cache")


def image_properties(
    recipe: Recipe, machine: Machine, *, builder: str, base: str | None,
    confine: bool = False,
) -> dict[str, Any]:
    """The ContainerImage properties of the step's image: name ``<workflow>_<step_id>``,
    ``src/`` copied to ``/<step_id>/src``, the recipe's ``orch:`` settings (``confine``: the
    recipe comes from a cloned registry, its base file must be its own or orch's)."""
    extra = recipe.extra
    files: dict[str, str] = {}
    for name, target in (extra.get("files") or {}).items():
        files[_inside(recipe.folder, name, recipe)] = str(target)
    if recipe.src is not None:
        files[str(recipe.src)] = f"/{recipe.step_id}/src"
    chosen = extra.get("base") or base or (SPACK_BASE if recipe.specs else None)
    if extra.get("base") and confine:
        _check_base(recipe, str(extra["base"]))
    if not chosen:
        raise ImageError(f"{recipe.workflow}/{recipe.step_id}: the recipe has no Spack specs "
                         "and no base image: give one as `orch: {base: ...}` in "
                         f"{recipe.file.name} (or {BASE_ENV} in orch's environment)")
    props: dict[str, Any] = {
        "image_name": f"{recipe.workflow}_{recipe.step_id}",
        "builder": builder,
        "build_on": "local",
        "base": str(chosen),
        "files": files,
    }
    for key in ("post", "environment", "runscript", "format"):
        if extra.get(key) not in (None, "", [], {}):
            props[key] = extra[key]
    props.update(_easybuild_properties(recipe))
    return props


def _easybuild_properties(recipe: Recipe) -> dict[str, Any]:
    """``easyconfigs`` and the ``easybuild_*`` properties of a step's ``easybuild/`` folder
    and its recipe's ``orch: {easybuild: {on, prefix, options}}``."""
    settings = recipe.extra.get("easybuild") or {}
    where = f"{recipe.workflow}/{recipe.step_id}"
    if not isinstance(settings, dict):
        raise ImageError(f"{where}/{recipe.file.name}: orch.easybuild must be a map (on, "
                         "prefix, options)")
    folder = recipe.easybuild
    if folder is None:
        if settings:
            raise ImageError(f"{where}/{recipe.file.name}: orch.easybuild is set but the step "
                             f"has no {EASYBUILD_DIR}/*.eb easyconfigs")
        return {}
    if not within(folder, recipe.folder):
        raise ImageError(f"{where}/{EASYBUILD_DIR} links out of the step's folder")
    for file in folder.glob("*.eb"):
        if not within(file, recipe.folder):
            raise ImageError(f"{where}/{EASYBUILD_DIR}/{file.name} links out of the step's "
                             "folder")
    props: dict[str, Any] = {"easyconfigs": [str(folder)]}
    sources = folder / "sources"
    if sources.is_dir():
        if not within(sources, recipe.folder):
            raise ImageError(f"{where}/{EASYBUILD_DIR}/sources links out of the step's folder")
        props["easybuild_sources"] = str(sources)
    for key in ("on", "prefix", "options"):
        if settings.get(key) not in (None, "", []):
            props[f"easybuild_{key}"] = settings[key]
    return props


def say_lines(recipe: Recipe, machine: Machine, spack: dict[str, Any] | None) -> list[str]:
    """What the build is made of, for the operation's log."""
    lines = [f"recipe {recipe.workflow}/{recipe.step_id}/{recipe.file.name}"
             + (", src/ -> /" + recipe.step_id + "/src" if recipe.src else ", no src/")]
    if recipe.easybuild is not None:
        names = ", ".join(sorted(f.name for f in recipe.easybuild.glob("*.eb")))
        where = (recipe.extra.get("easybuild") or {}).get("on") or "image"
        lines.append(f"EasyBuild easyconfigs ({EASYBUILD_DIR}/): {names}; eb runs "
                     + ("on orch's machine" if where == "local" else "in the image build"))
    if spack is None and recipe.easybuild is None:
        lines.append("the recipe has no Spack specs: the image is its base with the step's files")
    elif spack is not None:
        lines.append(f"Spack specs: {', '.join(spack['specs'])}"
                     + "".join(f"; {k} {spack[k]}" for k in ("target", "mpi", "gpu") if k in spack))
    shown_machine = ", ".join(f"{k} {v}" for k, v in vars(machine).items() if v)
    if shown_machine:
        lines.append(f"machine: {shown_machine}")
    return lines
