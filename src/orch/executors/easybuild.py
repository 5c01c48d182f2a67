"""The built-in executor ``easybuild``: ``orch.nodes.EasyBuildSoftware`` builds software on the
site that hosts it, with the site's own EasyBuild (``eb``) and module system, over SSH, unless
its modules are there already.

``create``:

1. Through the site's module system (Lmod or Environment Modules, found as ``MODULE_INIT``
   finds it), with ``<prefix>/modules/all`` put first on ``MODULEPATH``: when every module the
   node names (``modules``, default from the easyconfig file names, ``NAME-VERSION...eb`` ->
   ``NAME/VERSION...``, EasyBuild's default naming) is available, nothing is built.
2. Else the easyconfigs that are files of orch's machine (relative to the blueprint's folder)
   and the ``sources`` folder are uploaded to the node's folder on the site
   (``<work_dir>/<deployment>/<node>``, or ``workdir``); names that are no local file are left
   to the site's eb to find in its robot path (its easyconfigs repository).
3. ``eb --robot`` runs there (``eb``: the command, default ``eb``; a path puts its folder first
   on PATH, where eb looks for ``python``; ``eb_modules`` are loaded first, e.g. a site's
   ``EasyBuild`` module), installing into ``prefix`` (default ``<work_dir>/easybuild``), its
   output streamed to the operation's log; as root it adds
   ``--allow-use-as-root-and-accept-consequences``.
4. Every module is loaded once to check it.

A failing build says which easyconfig failed and eb's error (the message), with the last lines
of eb's log on the site as the output's tail. Outputs: ``modulepath`` (``<prefix>/modules/all``:
give it to jobs' ``MODULEPATH``), ``modules``, ``built``. ``delete`` leaves the software (other
deployments may use it).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from orch.executors.base import OperationResult, RunContext, Task
from orch.executors.builtin import accepts_builtin, expand_home, node_dir, work_root
from orch.executors.masking import Masker
from orch.images.easybuild import ROOT_FLAG, error_summary, log_tail, named_log
from orch.sites.modules import MODULE_INIT
from orch.transport.base import Transport, TransportError

NO_MODULES = 3
"""Exit status of the probe when the site has no module system."""
NO_EB = "orch: eb not found:"


class Failed(Exception):
    def __init__(self, message: str, tail: list[str] | None = None):
        super().__init__(message)
        self.tail = tail or []


def module_name(easyconfig: str) -> str:
    """EasyBuild's default module name of an easyconfig file: ``hello-1.0.eb`` -> ``hello/1.0``,
    ``GROMACS-2023.3-foss-2023a.eb`` -> ``GROMACS/2023.3-foss-2023a``."""
    name = posixpath.basename(easyconfig)
    match = re.match(r"^(.+?)-(\d[^/]*)\.eb$", name)
    if not match:
        raise Failed(f"cannot tell the module of easyconfig {name} (NAME-VERSION...eb): give "
                     "the node's modules property")
    return f"{match.group(1)}/{match.group(2)}"


def _strings(value: Any, what: str) -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise Failed(f"{what} must be a list")
    return [str(v) for v in value if str(v).strip()]


class EasyBuildExecutor:
    """Builds ``orch.nodes.EasyBuildSoftware`` on its site (see the module's doc)."""

    name = "easybuild"
    kinds = "orch.artifacts.Builtin 'easybuild' (EasyBuild software built on the site)"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        mask = Masker(task.secret_values)
        log = mask.sink(context.log)
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        if task.operation != "create":
            return OperationResult("ok", rc=0)
        try:
            transport = context.transport(task.host)
            outputs = _create(task, context, transport, lambda line: log("stdout", line))
        except Failed as exc:
            status = "cancelled" if context.cancel.is_set() else "failed"
            return mask.result(OperationResult(status, rc=None, message=str(exc),
                                               stdout_tail=exc.tail))  # fmt: skip
        except TransportError as exc:
            return mask.result(OperationResult("failed", message=str(exc),
                                               started=exc.started))  # fmt: skip
        return mask.result(OperationResult("ok", rc=0, outputs=outputs))


def _shell(lines: list[str]) -> str:
    return "\n".join(lines)


def _setup(task: Task, prefix: str) -> list[str]:
    """Module system, the prefix's modules first, eb's folder on PATH, eb_modules loaded."""
    q = shlex.quote
    eb = str(task.properties.get("eb") or "eb")
    lines = [MODULE_INIT,
             f"command -v module >/dev/null 2>&1 || {{ echo 'orch: no module system (Lmod, "
             f"Environment Modules) on this site'; exit {NO_MODULES}; }}",
             f'export MODULEPATH={q(prefix + "/modules/all")}"${{MODULEPATH:+:$MODULEPATH}}"']
    if "/" in eb:
        lines.append(f'export PATH={q(posixpath.dirname(eb))}:"$PATH"')
    loads = _strings(task.properties.get("eb_modules"), "eb_modules")
    if loads:
        lines.append("module load " + " ".join(q(m) for m in loads))
    return lines


def _create(task: Task, context: RunContext, transport: Transport, say: Any) -> dict[str, str]:
    q = shlex.quote
    props = task.properties
    easyconfigs = _strings(props.get("easyconfigs"), "easyconfigs")
    if not easyconfigs:
        raise Failed("an EasyBuildSoftware node needs easyconfigs (.eb files or names)")
    modules = _strings(props.get("modules"), "modules") or [module_name(e) for e in easyconfigs]
    raw_prefix = str(props.get("prefix") or "")
    prefix = (expand_home(raw_prefix, transport) if raw_prefix
              else posixpath.join(work_root(task, transport), "easybuild"))  # fmt: skip
    setup = _setup(task, prefix)
    outputs = {"modulepath": f"{prefix}/modules/all", "modules": " ".join(modules)}
    probe = transport.run(_shell([*setup, "module is-avail " + " ".join(q(m) for m in modules)]),
                          timeout=120, cancel=context.cancel)  # fmt: skip
    if probe.rc == NO_MODULES:
        raise Failed(f"{task.host.describe()}: no module system (Lmod, Environment Modules): "
                     "EasyBuild software needs one")
    if probe.rc == 0:
        say(f"EasyBuild: {', '.join(modules)} already available on {task.host.describe()}: "
            "not built")
        return {**outputs, "built": "false"}
    folder = node_dir(task, transport)
    local, names = _local_files(task, easyconfigs)
    ec_dir = f"{folder}/easyconfigs"
    transport.makedirs(ec_dir)
    for path in local:
        transport.put(str(path), f"{ec_dir}/{path.name}")
    sources = [f"{folder}/sources"]
    if props.get("sources"):
        sources.append(_upload_tree(task, transport, str(props["sources"]), f"{folder}/given"))
    say(f"EasyBuild: building {', '.join(names)} on {task.host.describe()} into {prefix}")
    logs = f"{folder}/logs"
    args = [f"--installpath={prefix}", f"--prefix={folder}/eb", f"--buildpath={folder}/build",
            f"--sourcepath={':'.join(sources)}", f"--robot-paths={ec_dir}:", "--robot",
            f"--tmp-logdir={logs}", "--output-style=basic",
            *_strings(props.get("options"), "options")]  # fmt: skip
    files = [f"{ec_dir}/{p.name}" for p in local] + [n for n in names if "/" not in n
                                                     and n not in {p.name for p in local}]
    eb = str(props.get("eb") or "eb")
    build = _shell([
        *setup,
        f"command -v {q(eb)} >/dev/null 2>&1 || {{ echo {q(NO_EB)} {q(eb)}; exit 127; }}",
        f'if [ "$(id -u)" = 0 ]; then set -- {ROOT_FLAG}; else set --; fi',
        f"{q(eb)} \"$@\" {' '.join(q(a) for a in args)} {' '.join(q(f) for f in files)}",
    ])
    lines: list[str] = []

    def line(_stream: str, text: str) -> None:
        lines.append(text)
        say(text)

    result = transport.run(f"{{ {build}\n}} 2>&1", timeout=task.timeout, cancel=context.cancel,
                           on_line=line)  # fmt: skip
    if context.cancel.is_set():
        raise Failed("cancelled: the EasyBuild build was stopped")
    if result.rc == 127 and NO_EB in result.stdout:
        raise Failed(f"EasyBuild's {eb} is not found on {task.host.describe()}: install "
                     "EasyBuild there (pip install easybuild-framework easybuild-easyblocks, "
                     "with Lmod), load its module (eb_modules), or give its path (eb)")
    if result.rc != 0:
        output = lines or result.stdout.splitlines()
        message = error_summary(names, result.rc, output, task.host.describe())
        log_path = named_log("\n".join(output))
        tail: list[str] = []
        if log_path:
            try:
                tail = log_tail(transport.get_bytes(log_path).decode("utf-8", "replace"))
            except TransportError:
                tail = []
            message += f" (eb's log on the site: {log_path})"
        raise Failed(message, tail or [t for t in output if t.strip()][-15:])
    check = transport.run(_shell([*setup, "module load " + " ".join(q(m) for m in modules)]),
                          timeout=120)  # fmt: skip
    if check.rc != 0:
        why = (check.stderr or check.stdout).strip().splitlines()
        raise Failed(f"EasyBuild built {', '.join(names)} but `module load "
                     f"{' '.join(modules)}` fails: {why[-1] if why else check.rc} (give the "
                     "node's modules property)")  # fmt: skip
    say(f"EasyBuild: {', '.join(modules)} built; MODULEPATH {prefix}/modules/all")
    return {**outputs, "built": "true"}


def _local_files(task: Task, easyconfigs: list[str]) -> tuple[list[Path], list[str]]:
    """The easyconfigs that are files of orch's machine, and every easyconfig's file name."""
    base = Path(task.base_dir or ".")
    local: list[Path] = []
    names: list[str] = []
    for entry in easyconfigs:
        path = Path(os.path.abspath(base / Path(entry).expanduser()))
        if path.is_dir():
            found = sorted(path.glob("*.eb"))
            if not found:
                raise Failed(f"easyconfigs: {entry} holds no .eb file")
            local += found
            names += [p.name for p in found]
        elif path.is_file():
            local.append(path)
            names.append(path.name)
        elif "/" in entry or not entry.endswith(".eb"):
            raise Failed(f"easyconfigs: {entry} is neither a file of orch's machine ({path}) "
                         "nor an easyconfig name (NAME-VERSION...eb) for the site's eb")
        else:
            names.append(entry)  # the site's eb finds it in its robot path
    return local, names


def _upload_tree(task: Task, transport: Transport, given: str, target: str) -> str:
    folder = Path(os.path.abspath(Path(task.base_dir or ".") / Path(given).expanduser()))
    if not folder.is_dir():
        raise Failed(f"sources: {given} is not a folder (looked at {folder})")
    transport.makedirs(target)
    for path in sorted(folder.rglob("*")):
        remote = f"{target}/{path.relative_to(folder).as_posix()}"
        if path.is_dir():
            transport.makedirs(remote)
        elif path.is_file():
            transport.put(str(path), remote)
    return target
