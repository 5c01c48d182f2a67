"""PyCOMPSs workflows (``orch.nodes.PyCOMPSsJob``, and eFlows4HPC's ``PyCOMPSJob`` whose
operations are the Yorc plugin's ``embedded`` artifact), launched as on a COMPSs cluster: load
the modules, then ``enqueue_compss`` with flags from the node's properties. enqueue_compss
writes and submits the Slurm job itself and prints sbatch's ``Submitted batch job N``; from
there the job is watched and cancelled like any Slurm job (``SlurmExecutor``). Its output is
enqueue_compss' ``compss-N.out`` / ``compss-N.err`` in the folder it ran in.

The older ``pycomps.ansible`` library's ``PyCOMPSJob`` has flat properties, read as its
``submit_pycomps.yaml`` does: ``command`` and ``arguments`` (words for the shell: ``$NAME`` and
``${NAME}`` are expanded), ``num_nodes`` (the workflow input ``num_nodes`` wins when given),
``compss_module_version`` (``module load COMPSs/<version>``; the input ``compss_module_version``
wins), ``input_data_path`` / ``output_data_path`` exported as ``INPUT_DATA_PATH`` /
``OUTPUT_DATA_PATH`` (the inputs ``target_path`` / ``source_path`` win), the image its
``img_transfer`` placed over ``container_image``, ``qos``, ``container_*``,
``python_interpreter`` and ``extra_compss_opts``.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from orch.executors.base import Task
from orch.executors.builtin import environment_lines, module_lines, setting
from orch.executors.schedulers import JobFiles, Scheduler, ScriptError
from orch.executors.slurm import SlurmExecutor
from orch.transport.base import Transport

YORC_ARTIFACT = "org.eflows4hpc.pycompss.plugin.artifacts.Deployment"
YORC_DEFAULT_MODULES = ("compss/3.0", "singularity")
"""``SubmissionParams.compss_modules``'s default in the Yorc plugin's types: what the plugin
loads when a topology names none."""


class PyCOMPSsExecutor(SlurmExecutor):
    name = "pycompss"
    kinds = "orch.artifacts.Builtin 'pycompss' (enqueue_compss), eFlows4HPC's embedded PyCOMPSs"
    names_job_files = False

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return artifact_type == YORC_ARTIFACT or super().accepts(implementation, artifact_type)

    def files(self, task: Task, transport: Transport,
              scheduler: Scheduler | None = None) -> JobFiles:  # fmt: skip
        return JobFiles(super().files(task, transport, scheduler).folder, "compss")

    def submission(self, task: Task, files: JobFiles) -> tuple[str, bytes | None]:
        props = _yorc_properties(task.properties, task.inputs)
        # the environment first: it may be what makes the module system (or a tool) found
        # orch's variables and the workflow's inputs too, as Yorc's plugin exports them
        lines = environment_lines(task, {**task.environment, **(props.get("environment") or {})})
        lines += module_lines(props.get("modules") or setting(task, "modules")
                              or props.get("default_modules"))  # fmt: skip
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
    variables = {**task.environment, **(props.get("environment") or {})}
    bare = bool(props.get("shell_words"))
    words.append(shlex.quote(expand(str(app), task, variables, bare)))
    words += [shlex.quote(expand(str(a), task, variables, bare))
              for a in props.get("arguments") or []]  # fmt: skip
    return words


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SHELL_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(text: str, task: Task, variables: dict[str, str] | None = None,
           bare: bool = False) -> str:  # fmt: skip
    """``${name}`` (and ``$name`` when ``bare``) replaced by the workflow input (or orch
    variable, or ``variables`` entry) of that name, as Yorc's plugin has the shell do; an
    undefined name is an error naming it, never an empty path."""
    known = task.environment if variables is None else variables

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in known:
            return str(known[name])
        raise ScriptError(
            f"{task.node}: '{text}' names ${{{name}}}, which no input of the workflow defines: "
            f"give it with orch run WORKFLOW -i {name}=VALUE"
        )

    return (_SHELL_REFERENCE if bare else _REFERENCE).sub(value, text)


def _yorc_properties(props: dict[str, Any], inputs: dict[str, Any] | None = None
                     ) -> dict[str, Any]:  # fmt: skip
    """eFlows4HPC's nested properties (submission_params, application) or the flat ones of
    ``pycomps.ansible`` (with its operation's ``inputs``) in orch's names; orch's own
    properties pass through."""
    if "submission_params" not in props and "application" not in props:
        if "command" in props and "app" not in props:
            return _pycomps_ansible_properties(props, inputs or {})
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
        # the type's own default, when neither the node nor the site names modules
        "default_modules": YORC_DEFAULT_MODULES,
        "container_image": container.get("container_image"),
        "container_options": container.get("container_opts"),
        "container_compss_path": container.get("container_compss_path"),
    }


def _pycomps_ansible_properties(props: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """``pycomps.ansible.nodes.PyCOMPSJob``'s properties, as its submit_pycomps.yaml reads its
    operation's inputs: each ``*_input`` (a workflow input) wins over its property when given."""

    def value(name: str, override: str | None = None) -> Any:
        if override and inputs.get(override) not in (None, ""):
            return inputs[override]
        return inputs[name] if name in inputs else props.get(name)

    version = value("compss_module_version", "compss_module_version_input")
    paths = {
        "INPUT_DATA_PATH": value("input_data_path", "input_data_path_input"),
        "OUTPUT_DATA_PATH": value("output_data_path", "output_data_path_input"),
    }
    return {
        "app": value("command"),
        "arguments": value("arguments") or [],
        "shell_words": True,
        "num_nodes": value("num_nodes", "num_nodes_input"),
        "qos": value("qos"),
        "python_interpreter": value("python_interpreter"),
        "extra_options": value("extra_compss_opts") or "",
        "modules": [f"COMPSs/{version}"] if version not in (None, "") else None,
        "container_image": value("container_image", "transferred_container_image"),
        "container_options": value("container_opts"),
        "container_compss_path": value("container_compss_path"),
        "environment": {k: str(v) for k, v in paths.items() if v not in (None, "")},
    }
