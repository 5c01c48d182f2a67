"""Ansible playbooks, run against the operation's one host as ansible-runner runs them.

Each operation gets a private data dir (``RunContext.artifacts_dir`` when the engine keeps the
records, else a temporary dir removed afterwards): the playbook and its dependencies under
``project/``, a one-host inventory, the extra vars (operation inputs and orch's variables) in
``env/extravars``, and ansible-runner's ``artifacts/`` (events, stdout, rc). Outputs are the
``set_stats`` data of the run and the facts its ``set_fact`` tasks set. Host keys are checked
against ``RunContext.known_hosts``; secrets are masked in the result, the log lines and the
files kept.

A new ``ansible-playbook`` process costs ~1 s of CPU before the first task, so playbooks are
forked by a fork server (``ansible_server``) that has Ansible loaded: same command line,
environment, display callback, events and artifacts as with ansible-runner, whose output filter
reads the child's output here. ``ORCH_ANSIBLE_FORK_SERVER=0`` (and a project with its own
``ansible.cfg``) runs ``ansible_runner.run`` instead, one process per playbook.

The operation's token (``ORCH_OPERATION``) reaches the processes of every task on the host, as
it does every command orch starts: a callback plugin of orch's (``OPERATION_CALLBACK``) adds it
to each play's ``environment`` (below the user's own), so that modules and the commands they
start carry it whatever interpreter runs them. A playbook stopped by its timeout or a cancel
is killed here, and then what its task left running on a remote host is stopped there by that
token (``orch.transport.processes``); after orch was killed, the engine finds it the same way.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import datetime
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

from orch.executors import ansible_server
from orch.executors.base import (
    TAIL_LINES,
    OperationResult,
    RunContext,
    Task,
    as_text,
    escaping_artifact,
)
from orch.executors.masking import MASK, Masker
from orch.transport import processes
from orch.transport.base import OPERATION_ENV

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
"""How often a run checks whether to stop (cancel and timeout latency)."""
DRAIN_SECONDS = 5.0
"""How long the output of a killed playbook is still read."""
FORK_SERVER_SWITCH = "ORCH_ANSIBLE_FORK_SERVER"
"""Environment variable: 0 runs every playbook in its own process with ansible-runner."""
SERVER_CWD = "/"
"""The fork server's working directory: none of the user's ansible.cfg files."""
COMMON_SETTINGS = {
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    # one ssh session per task instead of three or four (no temp files to chmod)
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_NOCOLOR": "True",
}
"""Settings of every run (in the fork server's environment: Ansible reads some at import)."""
MESSAGE_LIMIT = 500
OPERATION_CALLBACK = """\
# Written by orch: puts the operation's token in the environment of every play's tasks.
from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

NAME = "__NAME__"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "orch_operation"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_play_start(self, play):
        token = os.environ.get(NAME)
        if not token:
            return
        ours = {NAME: token}
        # the play's own blocks belong to the play before the copy that runs: both
        plays = {id(play): play}
        for block in (*play.pre_tasks, *play.tasks, *play.post_tasks, *play.handlers):
            owner = getattr(block, "_play", None)
            if owner is not None:
                plays[id(owner)] = owner
        for each in plays.values():
            current = each.environment
            if isinstance(current, dict):
                current = [current]
            elif not isinstance(current, list):
                current = []
            if ours not in current:
                each.environment = [ours, *current]  # the user's own come after: theirs win
""".replace("__NAME__", OPERATION_ENV)
"""The callback plugin (``orch_operation``) that gives the plays' tasks the operation's token:
Ansible runs the ones in its callback path that do not need enabling, besides the stdout one."""


_plugins_lock = threading.Lock()
_plugins_dir: str | None = None


def _callback_dir() -> str:
    """A private folder of this process with the ``OPERATION_CALLBACK`` plugin, written once
    (the fork server's environment names it, and must stay the same), removed at exit."""
    global _plugins_dir
    with _plugins_lock:
        path = _plugins_dir
        if path is None or not os.path.isdir(path):
            path = tempfile.mkdtemp(prefix="orch-ansible-plugins-")
            _write_private(os.path.join(path, "orch_operation.py"), OPERATION_CALLBACK)
            atexit.register(shutil.rmtree, path, True)
            _plugins_dir = path
        return path


def _callback_path(path: str | None) -> str:
    """``ANSIBLE_CALLBACK_PLUGINS`` with orch's plugin folder after ``path``'s."""
    return ":".join(filter(None, (path, _callback_dir())))


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


def _kill_tree(tree: list[int]) -> None:
    """SIGKILLs the processes of ``tree``. Ansible's workers call setsid, so killing the
    playbook's process group alone would leave them (and their modules' commands) running:
    their own groups are killed too."""
    own_group = os.getpgid(0)
    for pid in tree:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid and pid != own_group:
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _kill_playbook(marker: str) -> None:
    """Kills ansible-runner's ansible-playbook child (its command line names ``marker``) and
    everything under it."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
            if parent != os.getpid():
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                if marker.encode() not in handle.read():
                    continue
        except (OSError, IndexError, ValueError):
            continue
        _kill_tree(ansible_server.process_tree(int(entry.name)))


def _kill_job(job: ansible_server.Job) -> None:
    """Kills a fork server's playbook child and everything under it, if it is still ours."""
    if job.pid is not None and job.alive():
        _kill_tree(ansible_server.process_tree(job.pid))


class _Stop:
    """Says when the operation must stop (cancelled, or past its timeout) and then kills the
    playbook's processes, each time it is asked (processes may fork meanwhile)."""

    def __init__(self, context: RunContext, timeout: float | None, kill: Callable[[], None]):
        self.cancel = context.cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.kill = kill
        self.reason: str | None = None

    def __call__(self) -> bool:
        if self.reason is None:
            if self.cancel.is_set():
                self.reason = "cancelled"
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.reason = "timeout"
            else:
                return False
        self.kill()
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


INPUT_FILES = (("env", "extravars"), ("inventory", "hosts.yml"))
"""Files of the private data dir that hold the inputs and the host's password, as JSON."""


def _redact_inputs(private: str, secrets: tuple[str, ...], mask: Masker) -> None:
    """Replaces the values that are secrets in the kept inputs and inventory by ``MASK``,
    whole, however short (masking text alone leaves short secrets there), and masks the rest.
    A file that cannot be rewritten is removed: it is no use without its secrets."""
    whole = {str(value) for value in secrets if value not in (None, "")}

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {mask(str(k)): scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, bool) or value is None:
            return value
        text = value if isinstance(value, str) else str(value)
        if text in whole or as_text(value) in whole:
            return MASK
        return mask(value) if isinstance(value, str) else value

    for parts in INPUT_FILES:
        path = os.path.join(private, *parts)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            _write_private(path, json.dumps(scrub(data)))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.remove(path)


@dataclass
class _Outcome:
    """How a playbook process ended, whichever way it ran."""

    status: str
    """ansible-runner's words: successful, failed, timeout, canceled."""
    rc: int | None
    stdout: str
    lost: str | None = None
    """Why the fork server could not run the playbook or did not see it end."""
    started: bool = True


class _RunnerArtifacts:
    """``artifacts/<ident>/`` as ansible-runner writes it: ``job_events/<counter>-<uuid>.json``
    (what the display callback printed, merged with the partial data it left in the folder),
    ``command``, ``stdout``, ``stderr``, ``rc`` and ``status``."""

    def __init__(self, private: str, ident: str, handler: Callable[[dict[str, Any]], bool]):
        self.ident = ident
        self.path = os.path.join(private, "artifacts", ident)
        self.events = os.path.join(self.path, "job_events")
        self.handler = handler
        os.makedirs(self.events, mode=0o700, exist_ok=True)

    def command(self, argv: list[str], cwd: str, env: dict[str, str]) -> None:
        record = {"command": argv, "cwd": cwd, "env": env}
        _write_private(os.path.join(self.path, "command"), json.dumps(record, ensure_ascii=False))

    def stdout(self) -> IO[str]:
        _write_private(os.path.join(self.path, "stderr"), "")  # the child's stderr is its stdout
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(os.path.join(self.path, "stdout"), flags, 0o600)
        return open(fd, "w", encoding="utf-8")

    def event(self, data: dict[str, Any]) -> None:
        """ansible-runner's ``Runner.event_callback``: called by ``OutputEventFilter``."""
        if "uuid" not in data:
            return  # the filter's end-of-output marker
        data["runner_ident"] = self.ident
        partial = os.path.join(self.events, f"{data['uuid']}-partial.json")
        with contextlib.suppress(OSError, ValueError):
            with open(partial, encoding="utf-8") as handle:
                data.update(json.load(handle))
            os.remove(partial)
        data.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat())
        if self.handler(data):
            target = os.path.join(self.events, f"{data['counter']}-{data['uuid']}.json")
            with contextlib.suppress(OSError):
                _write_private(target + ".tmp", json.dumps(data))
                os.rename(target + ".tmp", target)

    def finish(self, status: str, rc: int | None) -> None:
        for name, value in (("status", status), ("rc", rc)):
            _write_private(os.path.join(self.path, name), str(value))


def _server_env() -> dict[str, str]:
    """The environment of the fork server, common to every playbook: orch's, with ansible-
    runner's display callback (as ``RunnerConfig`` sets it) and orch's settings. Ansible reads
    most settings when it is imported, so they must be there before the server starts."""
    from ansible_runner.utils import get_callback_dir

    env = dict(os.environ)
    env.pop(FORK_SERVER_SWITCH, None)  # whether to use a server is no reason for a new one
    path = env.get("PATH", os.defpath)
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{path}"
    env.update(COMMON_SETTINGS)
    if env.get("ANSIBLE_STDOUT_CALLBACK"):
        env["ORIGINAL_STDOUT_CALLBACK"] = env["ANSIBLE_STDOUT_CALLBACK"]
    callbacks = env.get("AWX_LIB_DIRECTORY") or get_callback_dir()
    env["ANSIBLE_CALLBACK_PLUGINS"] = ":".join(
        filter(None, (_callback_path(env.get("ANSIBLE_CALLBACK_PLUGINS")), callbacks))
    )
    env["ANSIBLE_STDOUT_CALLBACK"] = "awx_display"
    env["ANSIBLE_CACHE_PLUGIN"] = "jsonfile"
    env["RUNNER_OMIT_EVENTS"] = "False"
    env["RUNNER_ONLY_FAILED_EVENTS"] = "False"
    return env


def _pump(read_fd: int, job: ansible_server.Job, stop: _Stop, sink: Any) -> None:
    """Feeds the playbook's output to ``sink`` until the output closes and the server says the
    playbook ended. Once it must stop (cancel, timeout), or the server died under it (it is
    killed then), or it ended while something it started still holds the output, the output is
    read for at most ``DRAIN_SECONDS`` more, as ansible-runner does."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    eof = False
    give_up: float | None = None
    while not (eof and job.done.is_set()):
        ending = stop()
        if job.error is not None:
            _kill_job(job)
            ending = True
        if give_up is None and (job.done.is_set() or (ending and job.pid is not None)):
            give_up = time.monotonic() + DRAIN_SECONDS
        if give_up is not None and time.monotonic() > give_up:
            break
        if eof:
            job.done.wait(POLL_SECONDS)
        elif select.select([read_fd], [], [], POLL_SECONDS)[0]:
            data = os.read(read_fd, 1 << 16)
            if data:
                sink.write(decoder.decode(data))
            else:
                eof = True
    sink.write(decoder.decode(b"", final=True))


def _forked_outcome(job: ansible_server.Job, stop: _Stop, stdout: str) -> _Outcome:
    """The end of a forked playbook in ansible-runner's words (rc 254 when stopped)."""
    if stop.reason is not None:
        return _Outcome("timeout" if stop.reason == "timeout" else "canceled", 254, stdout)
    if job.error is not None:
        return _Outcome("failed", None, stdout, lost=job.error, started=job.pid is not None)
    if not job.done.is_set():  # the server never said (cannot happen unless it hangs)
        return _Outcome("failed", None, stdout, lost="it did not report the end")
    return _Outcome("successful" if job.rc == 0 else "failed", job.rc, stdout)


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
        mask = Masker((*task.secret_values, *extra_secrets))
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        escaping = escaping_artifact(task)
        if escaping is not None:
            return OperationResult(
                "failed",
                started=False,
                message=mask(f"artifact name {escaping!r} must be a path inside the project dir"),
            )
        try:
            import ansible_runner  # noqa: F401 - its callback and event filter in both ways
        except ImportError as exc:  # pragma: no cover - a dependency of orch
            return OperationResult(
                "failed", started=False, message=f"ansible-runner is not installed: {exc}"
            )

        keep = context.artifacts_dir is not None
        try:
            if keep:
                private = os.path.abspath(context.artifacts_dir)
                os.makedirs(private, mode=0o700, exist_ok=True)
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
            ident = _inventory_name(f"{task.interface}.{task.operation}-{secrets.token_hex(3)}")
            envvars = self._envvars(task, context, private)
            if _use_fork_server(task):
                stop = _Stop(context, task.timeout, lambda: None)
                outcome = self._run_forked(task, private, ident, envvars, events, stop)
            else:
                marker = os.path.join(private, "inventory")
                stop = _Stop(context, task.timeout, lambda: _kill_playbook(marker))
                outcome = self._run_runner(task, private, ident, envvars, events, stop)
            result = self._result(task, outcome, events, mask, stop.reason)
            if stop.reason is not None or (outcome.lost is not None and outcome.started):
                left = _stop_remote(task, context)  # killed here: its task goes on there
                if left:
                    result.message = mask(f"{result.message}; {left}")
            return result
        except Exception as exc:  # ansible-runner's own errors (bad config, callback), records
            return OperationResult(
                "failed",
                started=False,
                message=mask(
                    f"cannot run the playbook of {task.label} on {host.describe()}: {exc}"
                ),
            )
        finally:
            with contextlib.suppress(OSError):
                os.remove(key_path)
            if keep:
                _redact_inputs(private, (*task.secret_values, *extra_secrets), mask)
                _redact_tree(private, mask, os.path.join(private, "project"))
            else:
                shutil.rmtree(private, ignore_errors=True)

    # -- running -----------------------------------------------------------------------------

    @staticmethod
    def _run_runner(
        task: Task,
        private: str,
        ident: str,
        envvars: dict[str, str],
        events: _Events,
        stop: _Stop,
    ) -> _Outcome:
        """One ``ansible-playbook`` process started by ansible-runner (~1 s of start-up)."""
        import ansible_runner

        # ansible-runner adds its own callback folder after these
        plugins = _callback_path(os.environ.get("ANSIBLE_CALLBACK_PLUGINS"))
        runner = ansible_runner.run(
            private_data_dir=private,
            playbook=task.implementation.name,
            ident=ident,
            envvars={**envvars, "ANSIBLE_CALLBACK_PLUGINS": plugins},
            # the timeout is ours (see _Stop); ansible-runner checks it between polls
            settings={"pexpect_timeout": POLL_SECONDS},
            cancel_callback=stop,
            event_handler=events,
            quiet=True,
        )
        try:
            with runner.stdout as handle:
                stdout = handle.read()
        except (OSError, AttributeError, ansible_runner.AnsibleRunnerException):
            stdout = ""
        return _Outcome(runner.status, runner.rc, stdout)

    @staticmethod
    def _run_forked(
        task: Task,
        private: str,
        ident: str,
        envvars: dict[str, str],
        events: _Events,
        stop: _Stop,
    ) -> _Outcome:
        """The playbook forked by the fork server, with what ansible-runner would give it:
        command line, environment, display callback, events and artifacts."""
        from ansible_runner.utils import OutputEventFilter

        records = _RunnerArtifacts(private, ident, events)
        base = _server_env()
        env = {
            **base,
            **envvars,
            "AWX_ISOLATED_DATA_DIR": records.path,
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": os.path.join(records.path, "fact_cache"),
        }
        # ansible-runner's command line, in the project dir
        argv = [
            "ansible-playbook",
            *("-i", os.path.join(private, "inventory")),
            *("-e", "@" + os.path.join(private, "env", "extravars")),
            task.implementation.name,
        ]
        cwd = os.path.join(private, "project")
        records.command(argv, cwd, env)
        _write_private(os.path.join(private, "env", "envvars"), json.dumps(envvars))
        sink = OutputEventFilter(records.stdout(), records.event, suppress_ansible_output=True)
        read_fd, write_fd = os.pipe()
        try:
            try:
                server = ansible_server.shared_server(base, SERVER_CWD)
                job = server.submit(argv, cwd, env, write_fd)
            except ansible_server.ServerError as exc:
                sink.close()
                records.finish("failed", None)
                return _Outcome("failed", None, "", lost=str(exc), started=False)
            finally:
                os.close(write_fd)
            stop.kill = lambda: _kill_job(job)
            try:
                _pump(read_fd, job, stop, sink)
            finally:
                if not job.done.is_set():
                    _kill_job(job)  # nobody reads its output any more
                sink.close()
        finally:
            os.close(read_fd)
        with open(os.path.join(records.path, "stdout"), encoding="utf-8") as handle:
            outcome = _forked_outcome(job, stop, handle.read())
        records.finish(outcome.status, outcome.rc)
        return outcome

    # -- preparing ---------------------------------------------------------------------------

    @staticmethod
    def _prepare(task: Task, context: RunContext, private: str, key_path: str) -> None:
        project = os.path.join(private, "project")
        for artifact in (task.implementation, *task.dependencies):
            target = os.path.join(project, artifact.name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(artifact.local_path, target)
            os.chmod(target, os.stat(artifact.local_path).st_mode & 0o777 | 0o600)
        # Ansible looks files up beside the playbook, and xOpera puts every artifact there by
        # its base name too: both work (blueprint-relative paths are kept as well)
        playbook_dir = os.path.dirname(os.path.join(project, task.implementation.name))
        for artifact in task.dependencies:
            for alias in (artifact.name, PurePosixPath(artifact.name).name):
                target = os.path.join(playbook_dir, alias)
                if not os.path.lexists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(artifact.local_path, target)

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
        _write_private(
            os.path.join(private, "env", "extravars"), json.dumps(extravars, default=str)
        )

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
            **COMMON_SETTINGS,
            # read when the ssh connection plugin loads, in the playbook's own process
            "ANSIBLE_SSH_ARGS": shlex.join(ssh_args),
            # the fork server's child makes its temporary dir under it (see ansible_server)
            "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"),
            # ansible-playbook carries the token, and OPERATION_CALLBACK passes it to the tasks
            **({OPERATION_ENV: token} if (token := task.environment.get(OPERATION_ENV)) else {}),
        }

    # -- result ------------------------------------------------------------------------------

    @staticmethod
    def _result(
        task: Task, outcome: _Outcome, events: _Events, mask: Masker, stopped: str | None
    ) -> OperationResult:
        stdout = outcome.stdout
        if not events.logged:  # ansible-playbook stopped before its first event (syntax)
            for line in stdout.splitlines():
                events.context.log("stdout", mask(line))
        lines = [line for line in stdout.splitlines() if line.strip()]
        tail = [mask(line) for line in lines[-TAIL_LINES:]]
        status, rc = outcome.status, outcome.rc

        def done(status, message="", **kwargs) -> OperationResult:
            return OperationResult(status, rc=rc, stdout_tail=tail, message=mask(message), **kwargs)

        where = task.host.describe()
        if stopped == "timeout" or status == "timeout":
            rc = None  # killed, as the transports report it
            return done("timeout", f"timed out after {task.timeout:g} s on {where}")
        if stopped == "cancelled" or status == "canceled":
            rc = None
            return done("cancelled", "cancelled")
        if outcome.lost is not None:
            if outcome.started:
                why = f"the ansible fork server died while running {task.label} on {where}"
            else:
                why = f"the ansible fork server could not run {task.label} on {where}"
            return done("failed", f"{why}: {outcome.lost}", started=outcome.started)
        if rc != 0:
            if events.failure is not None:
                name, reason = events.failure
                return done("failed", f"task {name!r} failed on {where}: {_one_line(reason)}")
            last = _one_line(lines[-1]) if lines else "no output"
            return done("failed", f"ansible-playbook exit status {rc} on {where}: {last}")
        outputs = {name: _as_output(value) for name, value in events.facts.items()}
        outputs.update({name: _as_output(value) for name, value in events.stats.items()})
        return done("ok", outputs={mask(k): mask(v) for k, v in outputs.items()})


def _stop_remote(task: Task, context: RunContext) -> str | None:
    """Once the playbook was killed here: stops what its task still runs on the remote host
    (the module and the commands it started, which the end of the SSH session does not end),
    found by the operation's token, SIGTERM then SIGKILL. Why it could not, if so."""
    host = task.host
    token = task.environment.get(OPERATION_ENV)
    if host.is_local or not token:
        return None  # here, the playbook's processes were killed with it
    try:
        processes.stop(context.transport(host), [token])
    except Exception as exc:  # the host went away meanwhile: say so, the result stands
        return f"what it started on {host.describe()} may still run there: {exc}"
    return None


def _use_fork_server(task: Task) -> bool:
    """The fork server, unless turned off, or the project has its own ``ansible.cfg`` (which
    ansible-playbook reads from its working directory when it starts: the server has
    started long before, elsewhere)."""
    if os.environ.get(FORK_SERVER_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    names = (task.implementation.name, *(a.name for a in task.dependencies))
    return not any(PurePosixPath(name).parts == ("ansible.cfg",) for name in names)


def _write_private(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


__all__ = ["MASK", "AnsibleExecutor"]
