"""PyCOMPSs workflows (``orch.nodes.PyCOMPSsJob``, and eFlows4HPC's ``PyCOMPSJob`` whose
operations are the Yorc plugin's ``embedded`` artifact), launched as on a COMPSs cluster: load
the modules, then ``enqueue_compss`` with flags from the node's properties. enqueue_compss
writes and submits the Slurm job itself and prints sbatch's ``Submitted batch job N``; from
there the job is watched and cancelled like any Slurm job (``SlurmExecutor``). Its output is
enqueue_compss' ``compss-N.out`` / ``compss-N.err`` in the folder it ran in.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from orch.executors.base import Task
from orch.executors.builtin import environment_lines, module_lines, setting
from orch.executors.slurm import SlurmExecutor
from orch.executors.slurm_script import JobFiles, ScriptError
from orch.transport.base import Transport

YORC_ARTIFACT = "org.eflows4hpc.pycompss.plugin.artifacts.Deployment"


class PyCOMPSsExecutor(SlurmExecutor):
    name = "pycompss"
    kinds = "orch.artifacts.Builtin 'pycompss' (enqueue_compss), eFlows4HPC's embedded PyCOMPSs"
    names_job_files = False

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return artifact_type == YORC_ARTIFACT or super().accepts(implementation, artifact_type)

    def files(self, task: Task, transport: Transport) -> JobFiles:
        return JobFiles(super().files(task, transport).folder, "compss")

    def submission(self, task: Task, files: JobFiles) -> tuple[str, bytes | None]:
        props = _yorc_properties(task.properties)
        # the environment first: it may be what makes the module system (or a tool) found
        # orch's variables and the workflow's inputs too, as Yorc's plugin exports them
        lines = environment_lines(task, {**task.environment, **(props.get("environment") or {})})
        lines += module_lines(props.get("modules") or setting(task, "modules"))
        lines.append(" ".join(enqueue_command(task, props)))
        # on stdin, evaluated by the shell: the exported values (secrets, maybe) stay out of
        # the command line, which every user of the login node can read with ps
        return 'eval "$(cat)"', " && ".join(lines).encode()


def enqueue_command(task: Task, props: dict[str, Any]) -> list[str]:
    """``enqueue_compss`` with its documented flags, then the application and its arguments."""
    app = props.get("app")
    if not app:
        raise ScriptError(f"{task.node}: no application: set app (its main file on the site)")
    flags: dict[str, Any] = {
        "num_nodes": props.get("num_nodes") or 1,
        "exec_time": props.get("exec_time"),
        "qos": props.get("qos") or setting(task, "qos"),
        "project_name": props.get("project") or setting(task, "account"),
        "queue": setting(task, "partition"),
        "job_name": task.node,
        "container_image": props.get("container_image")
        or task.related.get("image", {}).get("image_path")
        # eFlows4HPC: the image a DLSDAGImageTransfer placed on the site
        or task.related.get("img_transfer", {}).get("image_file_path"),
        "container_opts": props.get("container_options"),
        "container_compss_path": props.get("container_compss_path"),
        "python_interpreter": props.get("python_interpreter"),
    }
    words = ["enqueue_compss"]
    words += [f"--{flag}={shlex.quote(str(v))}" for flag, v in flags.items() if v not in (None, "")]
    extra = props.get("extra_options") or []
    if isinstance(extra, str):  # Yorc's extra_compss_opts is one string
        words += shlex.split(extra)
    else:
        words += [str(option) for option in extra]
    words.append(shlex.quote(expand(str(app), task)))
    words += [shlex.quote(expand(str(a), task)) for a in props.get("arguments") or []]
    return words


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, task: Task) -> str:
    """``${name}`` replaced by the workflow input (or orch variable) of that name, as Yorc's
    plugin has the shell do; an undefined name is an error naming it, never an empty path."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in task.environment:
            return task.environment[name]
        raise ScriptError(
            f"{task.node}: '{text}' names ${{{name}}}, which no input of the workflow defines: "
            f"give it with orch run WORKFLOW -i {name}=VALUE"
        )

    return _REFERENCE.sub(value, text)


def _yorc_properties(props: dict[str, Any]) -> dict[str, Any]:
    """eFlows4HPC's nested properties (submission_params, application) in orch's names; orch's
    own properties pass through."""
    if "submission_params" not in props and "application" not in props:
        return props
    params = props.get("submission_params") or {}
    application = props.get("application") or {}
    container = application.get("container_opts") or {}
    return {
        "app": application.get("command"),
        "arguments": application.get("arguments") or [],
        "num_nodes": params.get("num_nodes"),
        "qos": params.get("qos"),
        "python_interpreter": params.get("python_interpreter"),
        "extra_options": params.get("extra_compss_opts") or "",
        "modules": params.get("compss_modules"),
        "container_image": container.get("container_image"),
        "container_options": container.get("container_opts"),
        "container_compss_path": container.get("container_compss_path"),
    }
