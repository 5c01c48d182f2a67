"""The built-in executor ``dls``: eFlows4HPC's Data Logistics Service node types
(``dls.ansible.nodes.*``), carried out by orch itself instead of an Airflow service.

The eFlows4HPC playbooks turn a node's operation inputs into an Airflow DAG run's ``conf``
(``submit_dag_*.yaml``): each ``*_input`` (a workflow input) wins over its property when not
empty, ``host_from_env`` over ``host``, and the node's ``extra_conf`` (``conf``) lies under
those keys. ``build_conf`` computes the same ``conf``, picking the playbook by the operation's
``submit_tasks`` input as the playbooks do (else by node type). The DAG id (and the node type)
then chooses the transfer, done by ``orch.transfers``:

===========================  ======================  ==============================
node type                    DAG id                  transfer
===========================  ======================  ==============================
HTTP2SSH                     ``plainhttp2ssh``       HTTP(S) URL -> site
DLSDAGWebdavStageInData      ``webdav_stagein``      WebDAV -> site
DLSDAGWebdavStageOutData     ``webdav_stageout``     site -> WebDAV
GIT2SSH                      ``git2ssh``             git repository -> site
SSH2SSH                      ``ssh2ssh``             site -> site over SSH
DLSDAGStageInData            ``taskflow_example``    B2SHARE record -> site
===========================  ======================  ==============================

Image transfers, MLflow model DAGs, B2SHARE uploads and any other DAG id are refused, with the
type and DAG id named (``unsupported_reason``, which the planner can ask before running).

The engine's contract (``Task``): ``inputs`` are the evaluated inputs of ``Runnable.submit``
(or of ``Standard.start`` when ``run_in_standard_mode``), named as in the eFlows4HPC types;
``properties`` are the node's (``dag_id`` is read there when not an input);
``environment[NODE_TYPE_ENV]`` names the node's type, or its type and ancestors nearest first,
separated by commas; ``host`` is the target site's SSH host (credentials resolved), ``site``
its ``orch.sites.config.Site`` when it is one. An SSH2SSH source host is resolved by the
executor's ``resolve_host`` (default: the site of sites.yaml with that name or address).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from orch.executors.base import Host, OperationResult, OperationStatus, RunContext, Task
from orch.executors.builtin import accepts_builtin, node_dir
from orch.executors.masking import Masker
from orch.executors.staging import Failed, Run, Stopped, one_line
from orch.transport.base import TransportError

NODE_TYPE_ENV = "NODE_TYPE"
"""``Task.environment`` entry the engine sets to the node's type name (or the type and its
ancestors, nearest first, comma-separated)."""
TYPE_PREFIX = "dls.ansible.nodes."

HTTP, WEBDAV_IN, WEBDAV_OUT, GIT, SSH, B2SHARE = (
    "HTTP2SSH", "WebDAV stage-in", "WebDAV stage-out", "GIT2SSH", "SSH2SSH", "B2SHARE stage-in")

KIND_BY_TYPE = {
    TYPE_PREFIX + "HTTP2SSH": HTTP,
    TYPE_PREFIX + "DLSDAGWebdavStageInData": WEBDAV_IN,
    TYPE_PREFIX + "DLSDAGWebdavStageOutData": WEBDAV_OUT,
    TYPE_PREFIX + "GIT2SSH": GIT,
    TYPE_PREFIX + "SSH2SSH": SSH,
    TYPE_PREFIX + "DLSDAGStageInData": B2SHARE,
}
KIND_BY_DAG = {
    "plainhttp2ssh": HTTP,
    "http2ssh": HTTP,
    "webdav_stagein": WEBDAV_IN,
    "webdav_stageout": WEBDAV_OUT,
    "git2ssh": GIT,
    "ssh2ssh": SSH,
    "taskflow_example": B2SHARE,
}
IMAGE_TRANSFER = ("image transfers are not the dls executor's: the built-in "
                  "'eflows-image-transfer' does them")
REFUSED_TYPES = {
    TYPE_PREFIX + "DLSDAGImageTransfer": IMAGE_TRANSFER,
    TYPE_PREFIX + "DLSDAGModelUpload": "MLflow model uploads are not supported",
    TYPE_PREFIX + "DLSDAGModelSearchUpload": "MLflow model search uploads are not supported",
    TYPE_PREFIX + "DLSDAGModelStageIn": "MLflow model stage-in is not supported",
    TYPE_PREFIX + "DLSDAGStageOutData": "B2SHARE uploads (new records) are not supported",
}
REFUSED_DAGS = {
    "transfer_image": IMAGE_TRANSFER,
    "image_transfer": IMAGE_TRANSFER,
    "mlflow_upload": "MLflow model uploads are not supported",
    "model_search_upload": "MLflow model search uploads are not supported",
    "model_stagein": "MLflow model stage-in is not supported",
    "upload_example": "B2SHARE uploads (new records) are not supported",
}
KNOWN_TYPES = {TYPE_PREFIX + "DLSDAGRun", *KIND_BY_TYPE, *REFUSED_TYPES}

DEFAULT_PLAYBOOK = {
    TYPE_PREFIX + "DLSDAGRun": "submit_dag_generic.yaml",
    TYPE_PREFIX + "DLSDAGStageInData": "submit_dag_stagein_data.yaml",
    TYPE_PREFIX + "DLSDAGWebdavStageInData": "submit_dag_webdav_stagein_data.yaml",
    TYPE_PREFIX + "HTTP2SSH": "submit_dag_http2ssh_data.yaml",
    TYPE_PREFIX + "GIT2SSH": "submit_dag_git2ssh_data.yaml",
    TYPE_PREFIX + "SSH2SSH": "submit_dag_ssh2ssh_data.yaml",
    TYPE_PREFIX + "DLSDAGWebdavStageOutData": "submit_dag_webdav_stageout_data.yaml",
    TYPE_PREFIX + "DLSDAGStageOutData": "submit_dag_stageout_data.yaml",
}
SECRET_WORDS = ("password", "passwd", "token", "secret")
"""conf keys holding any of these are secrets: masked wherever they would show."""


class Refused(Exception):
    """A type or DAG id the dls executor does not serve."""


# -- which transfer -----------------------------------------------------------------------------


def type_names_of(task: Task) -> list[str]:
    raw = task.environment.get(NODE_TYPE_ENV) or ""
    return [name.strip() for name in raw.replace(";", ",").split(",") if name.strip()]


def _known_type(type_names: list[str]) -> str | None:
    return next((name for name in type_names if name in KNOWN_TYPES), None)


def transfer_kind(type_names: list[str], dag_id: str | None) -> str:
    """The transfer for a node type (and ancestors, nearest first) and DAG id; raises Refused
    with a message naming both."""
    known = _known_type(type_names)
    shown_type = type_names[0] if type_names else "a DLS node (no type given)"
    shown_dag = f"dag_id '{dag_id}'" if dag_id else "no dag_id"
    if known in REFUSED_TYPES:
        raise Refused(f"{shown_type} ({shown_dag}): {REFUSED_TYPES[known]}")
    if dag_id and dag_id in REFUSED_DAGS:
        raise Refused(f"{shown_type} ({shown_dag}): {REFUSED_DAGS[dag_id]}")
    if dag_id and dag_id in KIND_BY_DAG:
        return KIND_BY_DAG[dag_id]
    if known in KIND_BY_TYPE:
        return KIND_BY_TYPE[known]
    served = ", ".join(sorted(KIND_BY_DAG))
    raise Refused(f"{shown_type} ({shown_dag}): orch does not run arbitrary Data Logistics "
                  f"Service DAGs, only the transfers of DAGs {served}")


def unsupported_reason(type_names: list[str], dag_id: str | None) -> str | None:
    """Why the dls executor cannot carry out a node of these types (nearest first) with this
    DAG id, or None when it can: for the planner, before anything runs."""
    try:
        transfer_kind(list(type_names), dag_id)
    except Refused as exc:
        return str(exc)
    return None


# -- the DAG conf, as the playbooks compute it ------------------------------------------------


def given(value: Any) -> bool:
    """Ansible's ``is defined and length > 0``."""
    if value is None:
        return False
    try:
        return len(value) > 0
    except TypeError:
        return True


def as_bool(value: Any) -> bool:
    """Ansible's ``bool`` filter."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y", "t")


def _text(value: Any) -> Any:
    return "" if value is None else value


def extra_conf(value: Any) -> dict[str, Any]:
    """The node's ``extra_conf``: a map, or its JSON text (as Yorc passes it)."""
    if not given(value):
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        loaded = json.loads(str(value))
    except ValueError as exc:
        raise Failed(f"extra_conf is not a map nor JSON text: {exc}") from exc
    if not isinstance(loaded, dict):
        raise Failed("extra_conf must be a map")
    return loaded


def build_conf(inputs: dict[str, Any], playbook: str) -> dict[str, Any]:
    """The DAG run's ``conf`` as ``playbook`` (a ``submit_dag_*.yaml``) computes it."""
    v = dict(inputs)

    def over(name: str, override: str) -> None:
        if given(v.get(override)):
            v[name] = v[override]

    over("login", "login_input")
    over("vault_id", "vault_id_input")
    name = playbook.rsplit("/", 1)[-1]
    login, vault = _text(v.get("login")), _text(v.get("vault_id"))
    if name in ("submit_dag_generic.yaml", ""):
        target = {"login": login, "vault_id": vault}
        return {**extra_conf(v.get("conf")), **target}
    over("host", "host_from_env")
    host = _text(v.get("host"))
    if name in ("submit_dag_stagein_data.yaml", "submit_dag_webdav_stagein_data.yaml"):
        over("oid", "oid_input")
        over("target_path", "target_path_input")
        target = {"oid": _text(v.get("oid"))}
        if name == "submit_dag_webdav_stagein_data.yaml":
            target["force"] = as_bool(v.get("force"))
        target.update(target=_text(v.get("target_path")), host=host, login=login,
                      vault_id=vault)
    elif name == "submit_dag_http2ssh_data.yaml":
        over("url", "url_input")
        over("target_path", "target_path_input")
        target = {"url": _text(v.get("url")), "force": as_bool(v.get("force")),
                  "target": _text(v.get("target_path")), "host": host,
                  "port": _port(v.get("port")), "login": login, "vault_id": vault}
    elif name == "submit_dag_git2ssh_data.yaml":
        over("git_url", "git_url_input")
        over("git_repo", "git_repo_input")
        over("target_path", "target_path_input")
        target = {"gitlab_url": _text(v.get("git_url")), "gitlab_repo": _text(v.get("git_repo")),
                  "target": _text(v.get("target_path")), "host": host, "login": login,
                  "vault_id": vault}
    elif name == "submit_dag_ssh2ssh_data.yaml":
        target = _ssh2ssh(v)
    elif name == "submit_dag_webdav_stageout_data.yaml":
        over("oid", "oid_input")
        over("source_path", "source_path_input")
        target = {"oid": _text(v.get("oid")), "path": _text(v.get("source_path")),
                  "host": host, "login": login, "vault_id": vault}
    elif name == "submit_dag_stageout_data.yaml":
        over("mid", "mid_input")
        over("source_path", "source_path_input")
        over("register", "register_input")
        target = {"mid": _text(v.get("mid")), "source": _text(v.get("source_path")),
                  "host": host, "port": _port(v.get("port")), "login": login,
                  "vault_id": vault, "register": as_bool(v.get("register"))}
    else:
        raise Failed(f"the DLS playbook {name} is not one orch knows how to read")
    if given(v.get("conf")):
        return {**extra_conf(v.get("conf")), **target}
    return target


def _port(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 22


def _ssh2ssh(v: dict[str, Any]) -> dict[str, Any]:
    for name in ("source_host", "target_host"):
        if given(v.get(name + "_from_env")):
            v[name] = v[name + "_from_env"]
    for name in ("source_path", "target_path", "source_login", "target_login",
                 "source_vault_id", "target_vault_id"):
        if given(v.get(name + "_input")):
            v[name] = v[name + "_input"]
    if v.get("target_vault_id") is not None and not given(v.get("source_vault_id")):
        v["source_vault_id"] = v["target_vault_id"]
    if v.get("target_login") is not None and not given(v.get("source_login")):
        v["source_login"] = v["target_login"]
    return {key: _text(v.get(key)) for key in (
        "source_path", "source_host", "source_login", "source_vault_id",
        "target_path", "target_host", "target_login", "target_vault_id")}


def playbook_of(task: Task, type_names: list[str]) -> str:
    """The ``submit_tasks`` playbook the operation names, else the type's."""
    named = task.inputs.get("submit_tasks")
    if given(named):
        return str(named)
    known = _known_type(type_names)
    if known == TYPE_PREFIX + "DLSDAGWebdavStageInData" and task.interface != "Standard":
        return "submit_dag_stagein_data.yaml"  # what its Runnable interface names
    return DEFAULT_PLAYBOOK.get(known or "", "submit_dag_generic.yaml")


def secrets_of(task: Task, conf: dict[str, Any]) -> list[str]:
    """Every value that must not show: the task's secrets, the DLS API password, conf values
    under secret-looking keys, and passwords written into URLs."""
    from orch.transfers.httpio import split_credentials

    found: list[str] = [str(s) for s in task.secret_values if s]
    for source in (task.inputs, task.properties, conf):
        for key, value in source.items():
            if any(word in str(key).lower() for word in SECRET_WORDS) and given(value):
                found.append(str(value))
    for value in (*conf.values(), *task.inputs.values()):
        if isinstance(value, str) and "@" in value and "://" in value:
            try:
                _, auth = split_credentials(value)
            except ValueError:
                continue
            if auth is not None and auth.password:
                found.append(auth.password)
    return found


# -- the executor -------------------------------------------------------------------------------


HostResolver = Callable[[str], Host]


def sites_host(name: str) -> Host:
    """The site of sites.yaml called ``name``, or whose address is ``name``."""
    from orch.sites.config import current_sites

    book = current_sites()
    for site in book:
        if site.name == name or site.address == name:
            return site.host()
    return book.get(name).host()  # raises, naming the known sites


class DlsExecutor:
    """Carries out eFlows4HPC's DLS node types (``orch.artifacts.Builtin`` ``dls``)."""

    name = "dls"
    kinds = "orch.artifacts.Builtin 'dls' (eFlows4HPC Data Logistics Service transfers)"

    def __init__(self, resolve_host: HostResolver | None = None):
        self.resolve_host = resolve_host or sites_host

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def unsupported(self, type_names: list[str], properties: dict[str, Any]) -> str | None:
        """For the engine's pre-flight: why a node cannot be served, before anything runs."""
        dag_id = properties.get("dag_id")
        return unsupported_reason(type_names, str(dag_id) if dag_id else None)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        run = Run(task, context, Masker(task.secret_values), deadline)
        try:
            if not self._transfers(task):
                return self._result(run, "ok", outputs=self._noop_outputs(task))
            type_names = type_names_of(task)
            conf = build_conf(task.inputs, playbook_of(task, type_names))
            if "force" in conf:  # extra_conf gives text: "false" must stay false
                conf["force"] = as_bool(conf["force"])
            run.mask = Masker(secrets_of(task, conf))
            dag_id = str(task.inputs.get("dag_id") or task.properties.get("dag_id") or "")
            try:
                kind = transfer_kind(type_names, dag_id or None)
            except Refused as exc:
                raise Failed(str(exc)) from exc
            run.check()
            self._note_host(run, conf)
            outputs = self._transfer(run, kind, conf)
        except Stopped as exc:
            return self._result(run, exc.status, str(exc))
        except Failed as exc:
            return self._result(run, "failed", str(exc), started=exc.started)
        except TransportError as exc:
            return self._result(run, "failed", str(exc), started=exc.started)
        return self._result(run, "ok", outputs=outputs)

    @staticmethod
    def _transfers(task: Task) -> bool:
        """Runnable.submit transfers; Standard.start too unless ``run_in_standard_mode`` is
        false (then the playbook does nothing); every other operation does nothing."""
        if task.operation == "submit":
            return True
        if task.operation == "start" and task.interface == "Standard":
            mode = task.inputs.get("run_in_standard_mode",
                                   task.properties.get("run_in_standard_mode"))
            return mode is None or as_bool(mode)
        return False

    @staticmethod
    def _noop_outputs(task: Task) -> dict[str, str]:
        if task.operation == "run":  # the DAG monitor: the transfer ended in submit
            return {"TOSCA_JOB_STATUS": "COMPLETED"}
        return {}

    def _transfer(self, run: Run, kind: str, conf: dict[str, Any]) -> dict[str, str]:
        task, context = run.task, run.context
        if kind == SSH:
            from orch.transfers.ssh import ssh_to_site

            source = self._source_host(conf)
            target = context.transport(task.host)
            outputs = ssh_to_site(run, context.transport(source), target, source, conf, kind,
                                  lambda: node_dir(task, target))
            return self._finish(run, conf, outputs)
        transport = context.transport(task.host)

        def default_folder() -> str:
            return node_dir(task, transport)

        if kind == HTTP:
            from orch.transfers.http import http_to_site

            outputs = http_to_site(run, transport, conf, kind, default_folder)
        elif kind == B2SHARE:
            from orch.transfers.b2share import b2share_to_site

            outputs = b2share_to_site(run, transport, conf, kind, default_folder, task.site)
        elif kind == WEBDAV_IN:
            from orch.transfers.webdav import webdav_to_site

            outputs = webdav_to_site(run, transport, conf, kind, default_folder, task.site)
        elif kind == WEBDAV_OUT:
            from orch.transfers.webdav import site_to_webdav

            outputs = site_to_webdav(run, transport, conf, kind, default_folder, task.site)
        elif kind == GIT:
            from orch.transfers.git import git_to_site

            outputs = git_to_site(run, transport, conf, kind, default_folder)
        else:  # pragma: no cover - transfer_kind returns only the kinds above
            raise Failed(f"no transfer for {kind}")
        return self._finish(run, conf, outputs)

    @staticmethod
    def _note_host(run: Run, conf: dict[str, Any]) -> None:
        """The DAG would log in to the conf's host; orch uses the node's site connection."""
        named = str(conf.get("host") or conf.get("target_host") or "")
        host = run.task.host
        if named and named not in (host.name, host.address, "localhost"):
            run.log(f"note: the DAG conf names host {named}; orch transfers to the node's "
                    f"host {host.describe()}")

    def _source_host(self, conf: dict[str, Any]) -> Host:
        name = str(conf.get("source_host") or "")
        if not name:
            raise Failed(f"{SSH}: no source_host (set the source_host property or the "
                         "source_environment requirement)")
        try:
            host = self.resolve_host(name)
        except Exception as exc:
            raise Failed(f"{SSH}: {name}:{conf.get('source_path') or ''} -> "
                         f"{conf.get('target_path') or ''}: source host {name} is not "
                         f"known ({str(exc).strip(chr(39)) or type(exc).__name__})") from exc
        login = str(conf.get("source_login") or "")
        if login and login != host.user:
            host = dataclasses.replace(host, user=login)
        return host

    def _finish(self, run: Run, conf: dict[str, Any], outputs: dict[str, str]) -> dict[str, str]:
        host = run.task.host
        path = outputs.get("target_path") or outputs.get("path") or ""
        if "execution_url" not in outputs:
            where = host.describe() if not host.is_local else "localhost"
            outputs["execution_url"] = f"sftp://{where}{path}" if path.startswith("/") \
                else f"{where}:{path}"
        login = str(conf.get("login") or conf.get("target_login") or "orch")
        outputs.setdefault("TOSCA_JOB_ID", f"{login}-{uuid.uuid4()}")
        outputs.setdefault("TOSCA_JOB_STATUS", "COMPLETED")
        return outputs

    @staticmethod
    def _result(run: Run, status: OperationStatus, message: str = "", *,
                started: bool = True, outputs: dict[str, str] | None = None
                ) -> OperationResult:
        tail = list(run.lines)
        if status != "ok":
            run.log(message, "stderr")
        return OperationResult(
            status, rc=0 if status == "ok" else None, message=one_line(run.mask(message)),
            outputs={k: run.mask(str(v)) for k, v in (outputs or {}).items()},
            stdout_tail=tail, started=started,
        )


__all__ = ["NODE_TYPE_ENV", "DlsExecutor", "build_conf", "transfer_kind", "unsupported_reason"]
