"""Ansible playbooks, run with ansible-runner against the operation's one host.

Each operation gets a private data dir (``RunContext.artifacts_dir`` when the engine keeps the
records, else a temporary dir removed afterwards): the playbook and its dependencies under
``project/``, a one-host inventory, the extra vars (operation inputs and orch's variables) in
``env/extravars``, and ansible-runner's ``artifacts/`` (events, stdout, rc). Outputs are the
``set_stats`` data of the run and the facts its ``set_fact`` tasks set. Host keys are checked
against ``RunContext.known_hosts``; secrets are masked in the result, the log lines and the
files kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import PurePosixPath
from typing import Any

from orch.executors.base import TAIL_LINES, OperationResult, RunContext, Task
from orch.executors.script import MASK, Masker

ARTIFACT_TYPES = frozenset(
    name.lower()
    for name in (
        "tosca.artifacts.Implementation.Ansible",
        "org.alien4cloud.artifacts.AnsiblePlaybook",
        "Ansible",
        "tosca:Ansible",
    )
)
EXTENSIONS = (".yml", ".yaml")
SET_FACT_ACTIONS = frozenset({"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"})
FAILURE_EVENTS = ("runner_on_failed", "runner_on_unreachable")
KEY_FILE = ".orch_ssh_key"
POLL_SECONDS = 0.2
"""How often ansible-runner asks whether to stop (cancel and timeout latency)."""
MESSAGE_LIMIT = 500


class _JsonMasker(Masker):
    """Masks secrets as they are and as they appear inside JSON strings (escaped)."""

    def __init__(self, values: tuple[str, ...]):
        forms = set(values)
        forms.update(json.dumps(v)[1:-1] for v in values if v)
        forms.update(json.dumps(v, ensure_ascii=False)[1:-1] for v in values if v)
        super().__init__(tuple(forms))


def _inventory_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "host"


def _one_line(text: str) -> str:
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _failure_reason(res: dict[str, Any]) -> str:
    """Ansible's own words for a failed or unreachable task: ``msg``, or ``stderr`` when the
    message is only the generic one of a command."""
    msg = res.get("msg")
    msg = msg if isinstance(msg, str) else (json.dumps(msg) if msg else "")
    stderr = res.get("stderr") or ""
    if isinstance(stderr, str) and stderr.strip() and (not msg or msg == "non-zero return code"):
        lines = [line for line in stderr.splitlines() if line.strip()]
        reason = lines[-1]
        return f"{reason} (rc {res['rc']})" if "rc" in res else reason
    if not msg and isinstance(res.get("results"), list):
        for item in res["results"]:
            if isinstance(item, dict) and item.get("failed"):
                return _failure_reason(item)
    return msg or "failed"


def _as_output(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Events:
    """Collects what the run says, event by event: log lines, facts, stats, the failure."""

    def __init__(self, context: RunContext, mask: Masker):
        self.context = context
        self.mask = mask
        self.facts: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.failure: tuple[str, str] | None = None
        self.logged = False
        """(task name, reason) of the first task that failed the run."""

    def __call__(self, event: dict[str, Any]) -> bool:
        for line in (event.get("stdout") or "").splitlines():
            self.context.log("stdout", self.mask(line))
            self.logged = True
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "runner_on_ok" and data.get("task_action") in SET_FACT_ACTIONS:
            res = data.get("res") or {}
            facts = res.get("ansible_facts")
            if isinstance(facts, dict):
                self.facts.update(facts)
            for item in res.get("results") or ():
                if isinstance(item, dict) and isinstance(item.get("ansible_facts"), dict):
                    self.facts.update(item["ansible_facts"])
        elif kind == "playbook_on_stats":
            artifact_data = data.get("artifact_data")
            if isinstance(artifact_data, dict):
                self.stats.update(artifact_data)
        elif kind in FAILURE_EVENTS and self.failure is None and not data.get("ignore_errors"):
            name = data.get("task") or data.get("task_action") or "?"
            self.failure = (str(name), _failure_reason(data.get("res") or {}))
        return True  # keep the event in the artifacts


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process (from /proc)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _playbook_tree(marker: str) -> list[int]:
    """Our ansible-playbook child (its command line names ``marker``) and its descendants."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    roots = []
    for pid in children.get(os.getpid(), ()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    roots.append(pid)
        except OSError:
            continue
    tree, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _kill_playbook(marker: str) -> None:
    """SIGKILLs ansible-playbook and everything under it. Ansible's workers call setsid, so
    killing ansible-runner's process group alone would leave them (and their modules'
    commands) running: their own groups are killed too."""
    tree = _playbook_tree(marker)
    own_group = os.getpgid(0)
    for pid in tree:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid and pid != own_group:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class _Stop:
    """ansible-runner's cancel callback: True once the operation is cancelled or past its
    timeout, after killing the playbook's processes."""

    def __init__(self, context: RunContext, timeout: float | None, marker: str):
        self.cancel = context.cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.marker = marker
        self.reason: str | None = None

    def __call__(self) -> bool:
        if self.reason is None:
            if self.cancel.is_set():
                self.reason = "cancelled"
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.reason = "timeout"
            else:
                return False
        _kill_playbook(self.marker)
        return True


def _redact_tree(root: str, mask: Masker, skip: str) -> None:
    """Masks secrets in every text file under ``root`` except the ``skip`` folder."""
    for folder, dirs, files in os.walk(root):
        if os.path.abspath(folder) == os.path.abspath(skip):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError):
                continue
            masked = mask(text)
            if masked != text:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(masked)


class AnsibleExecutor:
    """Runs ``.yml``/``.yaml`` playbooks (TOSCA and Alien4Cloud Ansible artifacts)."""

    name = "ansible"
    kinds = "Ansible playbooks (.yml, .yaml)"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        if implementation.lower().endswith(EXTENSIONS):
            return True
        return bool(artifact_type) and artifact_type.lower() in ARTIFACT_TYPES

    def run(self, task: Task, context: RunContext) -> OperationResult:
        host = task.host
        extra_secrets = tuple(v for v in (host.password, host.private_key) if v)
        mask = _JsonMasker((*task.secret_values, *extra_secrets))
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        artifacts = (task.implementation, *task.dependencies)
        for artifact in artifacts:
            parts = PurePosixPath(artifact.name).parts
            if not parts or parts[0] == "/" or ".." in parts:
                return OperationResult(
                    "failed",
                    started=False,
                    message=mask(
                        f"artifact name {artifact.name!r} must be a path inside the project dir"
                    ),
                )
        try:
            import ansible_runner
        except ImportError as exc:  # pragma: no cover - a dependency of orch
            return OperationResult(
                "failed", started=False, message=f"ansible-runner is not installed: {exc}"
            )

        keep = context.artifacts_dir is not None
        try:
            if keep:
                private = os.path.abspath(context.artifacts_dir)
                os.makedirs(private, exist_ok=True)
            else:
                private = tempfile.mkdtemp(prefix="orch-ansible-")
        except OSError as exc:
            return OperationResult(
                "failed",
                started=False,
                message=mask(f"cannot create the ansible private data dir: {exc.strerror or exc}"),
            )
        key_path = os.path.join(private, KEY_FILE)
        try:
            try:
                self._prepare(task, context, private, key_path)
            except OSError as exc:
                return OperationResult(
                    "failed",
                    started=False,
                    message=mask(
                        f"cannot prepare the ansible private data dir {private}: "
                        f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
                    ),
                )
            events = _Events(context, mask)
            stop = _Stop(context, task.timeout, os.path.join(private, "inventory"))
            ident = f"{task.interface}.{task.operation}-{secrets.token_hex(3)}"
            runner = ansible_runner.run(
                private_data_dir=private,
                playbook=task.implementation.name,
                ident=_inventory_name(ident),
                envvars=self._envvars(task, context, private),
                # the timeout is ours (see _Stop); ansible-runner checks it between polls
                settings={"pexpect_timeout": POLL_SECONDS},
                cancel_callback=stop,
                event_handler=events,
                quiet=True,
            )
            return self._result(task, runner, events, mask, stop.reason)
        except Exception as exc:  # ansible-runner's own errors (bad config, callback)
            return OperationResult(
                "failed",
                started=False,
                message=mask(f"ansible-runner failed for {task.label} on {host.describe()}: {exc}"),
            )
        finally:
            with contextlib.suppress(OSError):
                os.remove(key_path)
            if keep:
                _redact_tree(private, mask, os.path.join(private, "project"))
            else:
                shutil.rmtree(private, ignore_errors=True)

    # -- preparing ---------------------------------------------------------------------------

    @staticmethod
    def _prepare(task: Task, context: RunContext, private: str, key_path: str) -> None:
        project = os.path.join(private, "project")
        for artifact in (task.implementation, *task.dependencies):
            target = os.path.join(project, artifact.name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(artifact.local_path, target)
            os.chmod(target, os.stat(artifact.local_path).st_mode & 0o777 | 0o600)

        host = task.host
        if host.is_local:
            variables: dict[str, Any] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
            }
        else:
            variables = {
                "ansible_connection": "ssh",
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_python_interpreter": "auto_silent",
            }
            if host.user:
                variables["ansible_user"] = host.user
            if host.private_key:
                text = (
                    host.private_key
                    if host.private_key.endswith("\n")
                    else (host.private_key + "\n")
                )
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                variables["ansible_ssh_private_key_file"] = key_path
            elif host.identity_file:
                variables["ansible_ssh_private_key_file"] = os.path.expanduser(host.identity_file)
            if host.password:
                variables["ansible_password"] = host.password
        inventory = {"all": {"hosts": {_inventory_name(host.name): variables}}}
        _write_private(os.path.join(private, "inventory", "hosts.yml"), json.dumps(inventory))
        extravars = {**task.inputs, **task.environment}
        _write_private(os.path.join(private, "env", "extravars"), json.dumps(extravars))

    @staticmethod
    def _envvars(task: Task, context: RunContext, private: str) -> dict[str, str]:
        path = os.environ.get("PATH", os.defpath)
        ssh_args = ["-o", "ControlMaster=no", "-o", "StrictHostKeyChecking=yes"]
        if context.known_hosts:
            files = " ".join(os.path.abspath(os.path.expanduser(f)) for f in context.known_hosts)
            ssh_args += ["-o", f"UserKnownHostsFile={files}"]
        return {
            # ansible-runner runs ansible-playbook from PATH: the one installed with orch
            "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{path}",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": shlex.join(ssh_args),
            # one ssh session per task instead of three or four (no temp files to chmod)
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"),
            "ANSIBLE_NOCOLOR": "True",
        }

    # -- result ------------------------------------------------------------------------------

    @staticmethod
    def _result(
        task: Task, runner: Any, events: _Events, mask: Masker, stopped: str | None
    ) -> OperationResult:
        try:
            with runner.stdout as handle:
                stdout = handle.read()
        except (OSError, AttributeError):
            stdout = ""
        if not events.logged:  # ansible-playbook stopped before its first event (syntax)
            for line in stdout.splitlines():
                events.context.log("stdout", mask(line))
        lines = [line for line in stdout.splitlines() if line.strip()]
        tail = [mask(line) for line in lines[-TAIL_LINES:]]
        status, rc = runner.status, runner.rc

        def done(status, message="", **kwargs) -> OperationResult:
            return OperationResult(status, rc=rc, stdout_tail=tail, message=mask(message), **kwargs)

        where = task.host.describe()
        if stopped == "timeout" or status == "timeout":
            rc = None  # killed, as the transports report it
            return done("timeout", f"timed out after {task.timeout:g} s on {where}")
        if stopped == "cancelled" or status == "canceled":
            rc = None
            return done("cancelled", "cancelled")
        if rc != 0:
            if events.failure is not None:
                name, reason = events.failure
                return done("failed", f"task {name!r} failed on {where}: {_one_line(reason)}")
            last = _one_line(lines[-1]) if lines else "no output"
            return done("failed", f"ansible-playbook exit status {rc} on {where}: {last}")
        outputs = {name: _as_output(value) for name, value in events.facts.items()}
        outputs.update({name: _as_output(value) for name, value in events.stats.items()})
        return done("ok", outputs={mask(k): mask(v) for k, v in outputs.items()})


def _write_private(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


__all__ = ["MASK", "AnsibleExecutor"]
