"""EasyBuild easyconfigs (``*.eb``) as a recipe kind of container images, beside Spack.

An ``orch.nodes.ContainerImage`` with ``easyconfigs`` (or an eFlows4HPC registry step with an
``easybuild/`` folder, see ``orch.images.eflows``) gets the software those easyconfigs describe,
installed with EasyBuild under ``easybuild_prefix`` (default ``/opt/easybuild``: software in
``software/<name>/<version>``, Lmod module files in ``modules/all``), and ``MODULEPATH`` set to
``<prefix>/modules/all`` in the image, so that ``module load NAME`` works there when the image
has Lmod (or Environment Modules); the programs also run by their full path.

Where EasyBuild runs (``easybuild_on``):

- ``image`` (default; what a real site does): ``eb --robot`` runs inside the image build, so
  the base image must have EasyBuild (``pip install easybuild``, a ``python`` on PATH) and a
  modules tool (Lmod), as the EasyBuild container images do. The easyconfigs are copied to
  ``<prefix>/easyconfigs`` and the sources folder (``easybuild_sources``) to
  ``<prefix>/sources`` (what it lacks, eb downloads: the build then needs the network).
  A base without ``eb`` fails the build with a line saying so.
- ``local``: ``eb --robot`` runs on orch's machine (``eb`` on PATH or beside orch's Python,
  and Lmod, e.g. ``pip install easybuild-framework easybuild-easyblocks`` and ``apt-get
  install lmod``), into orch's cache (``<orch cache>/easybuild/easybuild-<hash>``, one build
  per content hash of the easyconfigs, sources and options: a second image build does not run
  eb again), then the installed tree is copied into the image with the image's ``files``.
  EasyBuild writes its install path into module files (and may into scripts and RPATHs): orch
  rewrites it to the image's prefix in every text file, and says which binary files still
  hold it. The software is built for orch's machine: the image's base must match its OS and C
  library (or the software be static), which is why ``image`` is the default. No modules from
  orch's own ``MODULEPATH`` are used: every dependency is built and copied in.

A failing build says which easyconfig failed, eb's own error line and the last lines of its
log (the log of a ``local`` build is kept in ``<orch cache>/easybuild/logs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.images.cache import _tree, cache_root, locked
from orch.images.spec import ImageError, ImageSpec
from orch.sites.modules import MODULE_INIT

PREFIX = "/opt/easybuild"
PLACES = ("image", "local")
HASH_VERSION = 1
LOG_LINES = 15
LMOD_CMDS = ("/usr/share/lmod/lmod/libexec/lmod", "/usr/lib/lmod/lmod/libexec/lmod",
             "/opt/lmod/lmod/libexec/lmod")  # fmt: skip
INSTALL_EB = ("install EasyBuild on orch's machine: `pip install easybuild-framework "
              "easybuild-easyblocks` (into orch's environment, or anywhere on PATH) and Lmod "
              "(`apt-get install lmod`); or build in the image (easybuild_on: image) from a base "
              "image that has EasyBuild")  # fmt: skip
ROOT_FLAG = "--allow-use-as-root-and-accept-consequences"

Log = Callable[[str], None]


@dataclass(frozen=True)
class EasyBuildSpec:
    """The EasyBuild part of an image."""

    easyconfigs: tuple[Path, ...]
    sources: Path | None = None
    """EasyBuild's source path (the tarballs the easyconfigs name)."""
    on: str = "image"
    """Where eb runs: ``image`` (in the image build) or ``local`` (on orch's machine)."""
    prefix: str = PREFIX
    options: tuple[str, ...] = ()
    """More ``eb`` options (e.g. ``--try-toolchain=...``)."""


def _path(value: Any, base_dir: Path, what: str) -> Path:
    path = Path(os.path.abspath(base_dir / Path(str(value)).expanduser()))
    if not path.exists():
        raise ImageError(f"{what} {value} does not exist (looked at {path})")
    return path


def easybuild_spec(props: dict[str, Any], base_dir: Path) -> EasyBuildSpec | None:
    """The EasyBuild part of a ContainerImage's properties (None without ``easyconfigs``):
    ``easyconfigs`` (``.eb`` files, or folders of them), ``easybuild_sources``,
    ``easybuild_on``, ``easybuild_prefix``, ``easybuild_options``."""
    given = props.get("easyconfigs")
    if given in (None, "", []):
        return None
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list):
        raise ImageError("easyconfigs must be a list of .eb files (or folders of them)")
    files: list[Path] = []
    for entry in given:
        path = _path(entry, base_dir, "easyconfigs:")
        found = sorted(path.glob("*.eb")) if path.is_dir() else [path]
        if path.is_dir() and not found:
            raise ImageError(f"easyconfigs: {entry} holds no .eb file")
        for file in found:
            if file.suffix != ".eb" or not file.is_file():
                raise ImageError(f"easyconfigs: {file} is not an easyconfig (.eb file)")
            if file.name in {f.name for f in files}:
                raise ImageError(f"easyconfigs: two easyconfigs named {file.name}")
            files.append(file)
    sources = props.get("easybuild_sources")
    source_dir = _path(sources, base_dir, "easybuild_sources:") if sources else None
    if source_dir is not None and not source_dir.is_dir():
        raise ImageError(f"easybuild_sources: {sources} is not a folder")
    on = str(props.get("easybuild_on") or "image")
    if on not in PLACES:
        raise ImageError(f"easybuild_on must be image or local, not {on!r}")
    prefix = str(props.get("easybuild_prefix") or PREFIX).rstrip("/") or "/"
    if not prefix.startswith("/") or prefix == "/" or any(c.isspace() for c in prefix):
        raise ImageError(f"easybuild_prefix {prefix!r} must be an absolute folder, no spaces")
    options = props.get("easybuild_options") or []
    if isinstance(options, str):
        options = shlex.split(options)
    if not isinstance(options, list):
        raise ImageError("easybuild_options must be a list of eb options")
    return EasyBuildSpec(tuple(files), source_dir, on, prefix, tuple(str(o) for o in options))


def modulepath(prefix: str) -> str:
    """``MODULEPATH`` of the image: the prefix's modules first, the base's kept after them."""
    return f"{prefix}/modules/all${{MODULEPATH:+:$MODULEPATH}}"


def eb_arguments(eb: EasyBuildSpec, *, install: str, work: str, robot: list[str],
                 sources: str | None) -> list[str]:
    """``eb``'s options (the easyconfigs and the root flag are added by the caller)."""
    args = [f"--installpath={install}", f"--prefix={work}", f"--buildpath={work}/build",
            f"--robot-paths={':'.join(robot)}:", "--robot"]  # fmt: skip
    if sources:
        args.append(f"--sourcepath={sources}")
    return [*args, *eb.options]


# -- in the image build ------------------------------------------------------------------------


def install_script(eb: EasyBuildSpec) -> str:
    """The build step that runs eb in the image (easyconfigs and sources copied in before)."""
    q = shlex.quote
    p = eb.prefix
    args = eb_arguments(eb, install=p, work="/tmp/orch-easybuild", robot=[f"{p}/easyconfigs"],
                        sources=f"{p}/sources")  # fmt: skip
    files = " ".join(q(f"{p}/easyconfigs/{f.name}") for f in eb.easyconfigs)
    missing = ("orch: EasyBuild (eb) is not in the base image: use a base image with EasyBuild "
               "and Lmod, or build the easyconfigs on orch's machine (easybuild_on: local)")
    return "\n".join([
        MODULE_INIT,  # a build step's shell reads no profile: eb needs Lmod's LMOD_CMD
        f"command -v eb >/dev/null 2>&1 || {{ echo {q(missing)}; exit 127; }}",
        f'if [ "$(id -u)" = 0 ]; then set -- {ROOT_FLAG}; else set --; fi',
        f'eb "$@" {" ".join(q(a) for a in args)} {files}',
        f"rm -rf /tmp/orch-easybuild {q(p)}/sources {q(p)}/software/.locks",
    ])  # fmt: skip


def in_image(spec: ImageSpec, eb: EasyBuildSpec) -> ImageSpec:
    """The spec whose build runs eb: easyconfigs and sources copied in, eb before ``post``."""
    files = [*spec.files, *((f, f"{eb.prefix}/easyconfigs/{f.name}") for f in eb.easyconfigs)]
    if eb.sources is not None:
        files.append((eb.sources, f"{eb.prefix}/sources"))
    return dataclasses.replace(spec, files=tuple(files), post=(install_script(eb), *spec.post),
                               environment=_environment(spec, eb))  # fmt: skip


def _environment(spec: ImageSpec, eb: EasyBuildSpec) -> dict[str, str]:
    return {"MODULEPATH": modulepath(eb.prefix), **spec.environment}


# -- on orch's machine -------------------------------------------------------------------------


def find_eb() -> Path:
    """``eb`` on PATH, else beside orch's Python (raises ImageError saying how to install it)."""
    on_path = shutil.which("eb")
    if on_path:
        return Path(on_path)
    beside = Path(sys.executable).parent / "eb"
    if os.access(beside, os.X_OK):
        return beside
    raise ImageError(f"EasyBuild's eb is not on orch's machine (not on PATH nor in "
                     f"{beside.parent}): {INSTALL_EB}")  # fmt: skip


def eb_environment(eb_path: Path) -> dict[str, str]:
    """eb's environment: ``python`` and ``eb`` first on PATH (eb looks for ``python``), Lmod
    as the modules tool unless one is configured, and no MODULEPATH of orch's machine."""
    env = dict(os.environ)
    folders = [str(eb_path.parent), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join([*dict.fromkeys(folders), env.get("PATH", "")])
    env["MODULEPATH"] = ""
    env.pop("EASYBUILD_ROBOT_PATHS", None)
    tool = env.get("EASYBUILD_MODULES_TOOL", "Lmod")
    if tool == "Lmod" and not (env.get("LMOD_CMD") and os.access(env["LMOD_CMD"], os.X_OK)):
        found = shutil.which("lmod") or next(
            (c for c in LMOD_CMDS if os.access(c, os.X_OK)), None)
        if found is None:
            raise ImageError("EasyBuild needs Lmod on orch's machine (its modules tool): "
                             "`apt-get install lmod` (or set EASYBUILD_MODULES_TOOL)")
        env["LMOD_CMD"] = found
    return env


def build_key(eb: EasyBuildSpec) -> str:
    """The sha256 of what a local build is made of."""
    canonical = {
        "version": HASH_VERSION,
        "easyconfigs": [[f.name, _tree(f)] for f in eb.easyconfigs],
        "sources": _tree(eb.sources) if eb.sources is not None else None,
        "prefix": eb.prefix,
        "options": list(eb.options),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def easybuild_root() -> Path:
    """``<orch cache>/easybuild`` (beside the image cache)."""
    return cache_root().parent / "easybuild"


def ensure_built(eb: EasyBuildSpec, log: Log, cancel: threading.Event,
                 timeout: float | None, *, force: bool = False) -> Path:
    """The installed tree (``software/``, ``modules/``, paths rewritten to the prefix) of the
    easyconfigs, built on orch's machine unless in the cache (raises ImageError)."""
    root = easybuild_root()
    key = build_key(eb)
    final = root / f"easybuild-{key[:12]}"
    names = ", ".join(f.name for f in eb.easyconfigs)
    with locked(root / f".{final.name}.lock", cancel) as held:
        if not held:
            raise ImageError(f"cancelled while waiting for another EasyBuild build of {names}")
        if final.is_dir() and not force:
            log(f"EasyBuild: {names} unchanged: not rebuilt (in the cache: {final})")
            return final
        why = "rebuilding as asked (--force-rebuild)" if final.is_dir() else "not in the cache"
        log(f"EasyBuild: building {names} on orch's machine for {eb.prefix} ({why})")
        work = Path(tempfile.mkdtemp(prefix=".eb-", dir=root))
        try:
            started = time.monotonic()
            _run_eb(eb, work, log, cancel, timeout)
            _relocate(work / "install", eb.prefix, log)
            shutil.rmtree(work / "install" / "software" / ".locks", ignore_errors=True)
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(work / "install", final)
            log(f"EasyBuild: {names} built in {time.monotonic() - started:.1f} s: {final}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final


def _run_eb(eb: EasyBuildSpec, work: Path, log: Log, cancel: threading.Event,
            timeout: float | None) -> None:
    eb_path = find_eb()
    env = eb_environment(eb_path)
    robot = list(dict.fromkeys(str(f.parent) for f in eb.easyconfigs))
    # eb writes into the first source folder (downloads, copies of easyblocks): its own
    sources = os.pathsep.join([str(work / "sources"), *([str(eb.sources)] if eb.sources else [])])
    args = eb_arguments(eb, install=str(work / "install"), work=str(work / "eb"), robot=robot,
                        sources=sources)  # fmt: skip
    logs = work / "logs"
    command = [str(eb_path), *([ROOT_FLAG] if os.geteuid() == 0 else []), *args,
               f"--tmp-logdir={logs}", f"--tmpdir={work / 'tmp'}", "--output-style=basic",
               *(str(f) for f in eb.easyconfigs)]  # fmt: skip
    try:
        process = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", start_new_session=True)  # fmt: skip
    except OSError as exc:
        raise ImageError(f"cannot run {eb_path}: {exc.strerror or exc}: {INSTALL_EB}") from exc
    output: list[str] = []
    done, state = _watch(process, cancel, timeout)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        output.append(line)
        log(line)
    rc = process.wait()
    done.set()
    if cancel.is_set():
        raise ImageError("cancelled: the EasyBuild build was stopped")
    if state.get("timed_out"):
        raise ImageError(f"the EasyBuild build timed out after {timeout:g} s")
    if rc != 0:
        raise ImageError(failure_message(eb, rc, output, logs, log))


def _watch(process: subprocess.Popen[str], cancel: threading.Event,
           timeout: float | None) -> tuple[threading.Event, dict[str, bool]]:
    """Kills eb's process group on cancel or timeout (``state["timed_out"]``); set the
    returned event once eb ended."""
    done = threading.Event()
    state: dict[str, bool] = {}
    deadline = None if timeout is None else time.monotonic() + timeout

    def watch() -> None:
        while not done.wait(0.1):
            late = deadline is not None and time.monotonic() >= deadline
            if cancel.is_set() or late:
                state["timed_out"] = late
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                return

    threading.Thread(target=watch, daemon=True).start()
    return done, state


def failure_message(eb: EasyBuildSpec, rc: int, output: list[str], logs: Path | None,
                    log: Log) -> str:
    """Which easyconfig failed, eb's error line and the last lines of its log (kept in
    ``<orch cache>/easybuild/logs``)."""
    message = error_summary([f.name for f in eb.easyconfigs], rc, output, "orch's machine")
    log_file = _log_file("\n".join(output), logs)
    if log_file is None:
        tail = [line for line in output if line.strip()][-LOG_LINES:]
        return "\n".join([message, "last lines of eb's output:", *("  " + t for t in tail)])
    kept = easybuild_root() / "logs" / log_file.name
    with contextlib.suppress(OSError):
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log_file, kept)
    shown = kept if kept.is_file() else log_file
    log(f"EasyBuild's log: {shown}")
    try:
        tail = log_tail(log_file.read_text("utf-8", "replace"))
    except OSError:
        tail = []
    return "\n".join([message, f"last lines of eb's log ({shown}):", *("  " + t for t in tail)])


def error_summary(names: list[str], rc: int, output: list[str], where: str) -> str:
    """``EasyBuild failed to build X.eb on WHERE (eb exit status N): eb's error``."""
    text = "\n".join(output)
    failed = re.findall(r"\bfor (\S+\.eb)\b", text)
    which = failed[-1] if failed else next((n for n in names if n in text), ", ".join(names))
    error = next((line for line in reversed(output)
                  if re.match(r"\s*(== FAILED:|ERROR:)", line)), "")  # fmt: skip
    error = re.sub(r"^\s*(== FAILED:\s*|ERROR:\s*)", "", error).strip()
    message = f"EasyBuild failed to build {which} on {where} (eb exit status {rc})"
    return f"{message}: {error}" if error else message


def named_log(output: str) -> str | None:
    """The log file eb's output names last (``Results ... in the log file(s) PATH``)."""
    named = re.findall(r"log file\(s\)\s+(\S+\.log)", output)
    return named[-1] if named else None


def _log_file(output: str, logs: Path | None) -> Path | None:
    named = named_log(output)
    if named and Path(named).is_file():
        return Path(named)
    if logs is None or not logs.is_dir():
        return None
    found = [p for p in logs.glob("easybuild-*.log") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def log_tail(text: str, count: int = LOG_LINES) -> list[str]:
    """The last lines of an eb log up to its last ERROR (not the call stack and lock lines
    after it), else its last lines."""
    lines = text.splitlines()
    last_error = max((i for i, line in enumerate(lines) if " ERROR " in line), default=None)
    end = len(lines) if last_error is None else last_error + 1
    return [line for line in lines[:end] if line.strip()][-count:]


def _relocate(tree: Path, prefix: str, log: Log) -> None:
    """The build's install path replaced by the image's prefix in text files (links into the
    tree made relative); binary files still holding it are named (e.g. an RPATH: build those
    in the image)."""
    old = str(tree).encode()
    new = prefix.encode()
    holding: list[str] = []
    for path in sorted(tree.rglob("*")):
        if path.is_symlink():
            target = os.readlink(path)
            if target.encode().startswith(old + b"/"):  # made relative: right at both places
                path.unlink()
                path.symlink_to(os.path.relpath(target, path.parent))
            continue
        if not path.is_file():
            continue
        data = path.read_bytes()
        if old not in data:
            continue
        if b"\0" in data:
            holding.append(str(path.relative_to(tree)))
            continue
        mode = path.stat().st_mode
        path.write_bytes(data.replace(old, new))
        os.chmod(path, mode)
    for name in holding[:10]:
        log(f"EasyBuild: warning: {name} holds the build's path {tree} (e.g. an RPATH) and may "
            f"not work at {prefix} in the image: build it in the image (easybuild_on: image)")


def on_orch_machine(spec: ImageSpec, eb: EasyBuildSpec, log: Log, cancel: threading.Event,
                    timeout: float | None, *, force: bool = False) -> ImageSpec:
    """The spec with the tree eb installed on orch's machine copied to the prefix."""
    tree = ensure_built(eb, log, cancel, timeout, force=force)
    if any(target == eb.prefix for _, target in spec.files):
        raise ImageError(f"files: {eb.prefix} is where the EasyBuild software goes")
    return dataclasses.replace(spec, files=(*spec.files, (tree, eb.prefix)),
                               environment=_environment(spec, eb))  # fmt: skip


def apply(spec: ImageSpec, log: Log, cancel: threading.Event, timeout: float | None, *,
          force: bool = False) -> ImageSpec:
    """The image spec with its EasyBuild part turned into files, steps and environment."""
    eb = getattr(spec, "easybuild", None)
    if eb is None:
        return spec
    if spec.recipe:
        raise ImageError("easyconfigs go with a generated recipe (base, files, post...): "
                         "leave `recipe` out, or run eb in the recipe given")
    spec = dataclasses.replace(spec, easybuild=None)
    if eb.on == "local":
        return on_orch_machine(spec, eb, log, cancel, timeout, force=force)
    return in_image(spec, eb)
