"""A fork server for ansible-playbook, so that a playbook costs a fork instead of a process start.

Starting ``ansible-playbook`` costs ~1 s of CPU (imports, then the plugin and collection
metadata YAML), whatever the playbook does. The server is one long-lived, single-threaded
process per orch process: it imports Ansible once, warms its plugin loader, and then forks one
child per playbook. A child is a fresh ``ansible-playbook`` in everything that matters: its own
session, working directory, environment, stdout and temporary dir, and Ansible's one-shot
globals (CLI args, vault secrets) are set for the first time in it.

Protocol: JSON messages over a ``SOCK_SEQPACKET`` socket pair (one message per packet).
The client sends ``{"id", "argv", "cwd", "env"}`` with the write end of a pipe attached
(``SCM_RIGHTS``); the child writes its stdout and stderr there, and the client reads it itself.
The server answers ``{"id", "pid"}`` at once and ``{"id", "exit"}`` (the exit code, negative for
a signal) when the child ends, or ``{"id", "error"}`` if it could not fork. It exits, killing
the playbooks still running, when the socket closes (orch exited or was killed) or its parent
changes. Nothing here imports Ansible unless the server runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

MAX_MESSAGE = 1 << 20
"""Largest request (the environment dominates: a few KiB)."""
IDLE_SECONDS = 1.0
"""How often the server checks that its parent is still there."""
STDERR_TAIL = 2000
FINDER_WARNING = "AnsibleCollectionFinder has already been configured"
COLD = "--cold"
"""Server option: no warm-up (after a warm-up that failed)."""


# -- server ---------------------------------------------------------------------------------


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode())


def _warm_up() -> None:
    """Loads what every playbook loads, so that children inherit it: the collection loader with
    ``ansible.builtin``'s metadata, and the plugins ansible-playbook loads (their documentation
    YAML, parsed once here). Best effort: a child does what is missing itself. Not the display
    callback: ansible-runner's reads the run's environment when it is imported."""
    from ansible import constants
    from ansible.plugins import callback, loader

    loader.init_plugin_loader([])
    import ansible_collections.ansible.builtin  # noqa: F401 - parses meta/runtime.yml

    for plugins in (loader.connection_loader, loader.shell_loader, loader.become_loader):
        list(plugins.all(class_only=True))
    list(loader.vars_loader.all(class_only=True))
    for name in constants.INVENTORY_ENABLED:
        loader.inventory_loader.get(name, class_only=True)
    for entry in os.scandir(os.path.dirname(callback.__file__)):
        name, extension = os.path.splitext(entry.name)
        if extension == ".py" and not name.startswith("_"):
            loader.callback_loader.get(f"ansible.builtin.{name}", class_only=True)
    for action in ("debug", "command", "shell", "set_fact", "set_stats", "copy", "template"):
        loader.action_loader.get(f"ansible.builtin.{action}", class_only=True)
        loader.module_loader.find_plugin(f"ansible.builtin.{action}")
    loader.strategy_loader.get("ansible.builtin.linear", class_only=True)
    loader.filter_loader.all(class_only=True)
    loader.test_loader.all(class_only=True)
    loader.lookup_loader.get("ansible.builtin.env", class_only=True)


def _reaped() -> Iterator[tuple[int, int]]:
    """(pid, exit code) of every child that ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


def _child(request: dict[str, Any], out: int, inherited: list[int]) -> NoReturn:
    """Runs one ansible-playbook in the forked child; never returns."""
    rc = 250
    local_tmp = None
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        warnings.filterwarnings("ignore", message=FINDER_WARNING)
        local_tmp = _fresh_local_tmp()
        from ansible.cli.playbook import PlaybookCLI

        PlaybookCLI.cli_executor(sys.argv)
        rc = 0
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        if local_tmp is not None:
            import shutil

            shutil.rmtree(local_tmp, ignore_errors=True)
    os._exit(rc)


def _fresh_local_tmp() -> str:
    """Ansible makes its local temporary dir when its constants are imported (in the server,
    under the server's ANSIBLE_LOCAL_TEMP): the child makes its own under the run's."""
    from ansible import constants

    path = constants.config.get_config_value("DEFAULT_LOCAL_TMP")
    constants.DEFAULT_LOCAL_TMP = path
    return path


class _Server:
    """The server's loop: requests in, forks, exit statuses out."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.parent = os.getppid()
        self.running: dict[int, int] = {}
        """child pid -> request id"""
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w)

    def serve(self) -> None:
        try:
            while self._step():
                pass
        except (OSError, KeyboardInterrupt):
            pass
        finally:
            self._kill_running()

    def _step(self) -> bool:
        readable, _, _ = select.select([self.sock, self.wake_r], [], [], IDLE_SECONDS)
        if self.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)
        for pid, code in _reaped():
            ident = self.running.pop(pid, None)
            if ident is not None:
                _send(self.sock, {"id": ident, "exit": code})
        if self.sock in readable:
            data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
            if not data:
                return False
            self._start(json.loads(data), fds)
        return os.getppid() == self.parent

    def _start(self, request: dict[str, Any], fds: list[int]) -> None:
        ident = request.get("id")
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            _send(self.sock, {"id": ident, "error": "no output pipe in the request"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fds[0])
            _send(self.sock, {"id": ident, "error": f"cannot fork: {exc.strerror or exc}"})
            return
        if pid == 0:
            self.sock.close()  # the server's death must reach orch as the end of the socket
            _child(request, fds[0], [self.wake_r, self.wake_w])
        os.close(fds[0])
        self.running[pid] = ident
        _send(self.sock, {"id": ident, "pid": pid})

    def _kill_running(self) -> None:
        """orch is gone: nobody reads the playbooks' output or waits for their end."""
        for pid in self.running:
            for member in process_tree(pid):
                with contextlib.suppress(OSError):
                    os.kill(member, signal.SIGKILL)


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    # as in the ansible-playbook script: its own folder first, not the working dir of ``-m``
    sys.path[0] = os.path.dirname(sys.executable)
    try:
        from ansible.cli.playbook import PlaybookCLI  # noqa: F401
    except Exception as exc:
        _send(sock, {"fatal": f"cannot import ansible: {type(exc).__name__}: {exc}"})
        return 1
    if COLD not in argv:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _warm_up()
        except Exception:
            # half-loaded plugins could mislead every child: start again without warming up
            traceback.print_exc()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, "-m", __spec__.name, argv[1], COLD])
    sys.stdout.flush()
    sys.stderr.flush()
    server = _Server(sock)
    _send(sock, {"ready": os.getpid()})
    server.serve()
    return 0


# -- processes ------------------------------------------------------------------------------


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every live process (from /proc)."""
    table: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            table[int(entry.name)] = int(fields[1])
    return table


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (whatever sessions they moved to)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _process_table().items():
        children.setdefault(parent, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): tells a process from a later one that
    reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# -- client ---------------------------------------------------------------------------------


class ServerError(Exception):
    """The fork server could not be started or is gone."""


@dataclass
class Job:
    """One playbook in the server: its pid once forked, its exit code once reaped."""

    id: int
    pid: int | None = None
    birth: int | None = None
    """``start_time`` of ``pid``, read when the server reported it."""
    rc: int | None = None
    error: str | None = None
    """Why the server could not run it or did not see it end (it died)."""
    done: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> bool:
        """Whether ``pid`` is still our playbook (and not a later process with its pid)."""
        if self.pid is None or self.birth is None:
            return False
        return start_time(self.pid) == self.birth


class ForkServer:
    """Client side: starts the server and lets any thread submit playbooks to it. One reader
    thread dispatches the server's answers to the jobs."""

    def __init__(self, env: dict[str, str], cwd: str):
        self.env = env
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the server's, read if it dies
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._retired = False
        self.dead: str | None = None
        """Why the server is gone (None while it runs)."""
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orch.executors.ansible_server", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,  # the terminal's Ctrl-C is orch's to handle
            )
        except OSError as exc:
            ours.close()
            self._stderr.close()
            raise ServerError(f"cannot start {sys.executable}: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        self._reader = threading.Thread(target=self._read, name="orch-ansible-server", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def submit(self, argv: list[str], cwd: str, env: dict[str, str], out: int) -> Job:
        """Asks for one playbook run whose stdout and stderr go to the pipe end ``out``."""
        with self._lock:
            if self.dead is not None:
                raise ServerError(self.dead)
            job = Job(next(self._ids))
            message = json.dumps({"id": job.id, "argv": argv, "cwd": cwd, "env": env})
            if len(message) >= MAX_MESSAGE:
                raise ServerError(f"the request is too large ({len(message)} bytes)")
            try:
                socket.send_fds(self._sock, [message.encode()], [out])
            except OSError as exc:
                # a server that died before reading its first request: why it died says more
                # than the broken pipe (which of the two comes first is a race)
                try:
                    code = self.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    raise ServerError(f"cannot reach it: {exc.strerror or exc}") from exc
                raise ServerError(self._exit_reason(code)) from exc
            self._jobs[job.id] = job
        return job

    def retire(self) -> None:
        """No new jobs; the server exits once the running ones are done."""
        with self._lock:
            self._retired = True
            if not self._jobs:
                self._close()

    def close(self) -> None:
        """Stops the server now (it kills the playbooks it still runs)."""
        with self._lock:
            self._close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _read(self) -> None:
        fatal = None
        try:
            while True:
                data = self._sock.recv(MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                if "fatal" in message:
                    fatal = message["fatal"]
                elif "id" in message:
                    self._dispatch(message)
        except ConnectionResetError:
            pass  # it died with our requests unread: as good as the end of the stream
        except (OSError, ValueError) as exc:
            fatal = fatal or f"lost its socket: {exc}"
        self._die(fatal)

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._lock:
            job = self._jobs.get(message["id"])
            if job is None:
                return
            if "pid" in message:
                job.pid = message["pid"]
                job.birth = start_time(job.pid)
                return
            del self._jobs[job.id]
            if self._retired and not self._jobs:
                self._close()
        if "exit" in message:
            job.rc = message["exit"]
        else:
            job.error = str(message.get("error"))
        job.done.set()

    def _die(self, fatal: str | None) -> None:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        reason = fatal or self._exit_reason(code)
        with self._lock:
            self.dead = reason
            jobs, self._jobs = list(self._jobs.values()), {}
            self._sock.close()
        self._stderr.close()
        for job in jobs:
            job.error = reason
            job.done.set()

    def _exit_reason(self, code: int | None) -> str:
        if code is None:
            why = "it closed its socket"
        elif code < 0:
            try:
                why = f"it was killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"it was killed by signal {-code}"
        else:
            why = f"it exited with status {code}"
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-STDERR_TAIL:].decode(errors="replace")
        except (OSError, ValueError):
            text = ""
        cause = _exit_cause(text, killed=code is None or code < 0)
        return f"{why}: {cause}" if cause else why


_WARNING = re.compile(r"warning|deprecat", re.IGNORECASE)
_ERROR = re.compile(r"\w*(Error|Exception)\b|\b(error|fatal|traceback)\b", re.IGNORECASE)


def _exit_cause(stderr: str, *, killed: bool) -> str | None:
    """The line of a dead server's stderr that says why it died, if any.

    Warnings are never a cause (libraries print deprecation notices at import time, with the
    source line that raised them indented below); a server killed by a signal died of the
    signal, so only an error line adds anything then."""
    lines: list[str] = []
    in_warning = False
    for raw in stderr.splitlines():
        if _WARNING.search(raw):
            in_warning = True
        elif not (in_warning and raw[:1].isspace()):
            in_warning = False
            if raw.strip():
                lines.append(raw.strip())
    errors = [line for line in lines if _ERROR.search(line)]
    if errors:
        return errors[-1]
    return None if killed or not lines else lines[-1]


_servers_lock = threading.Lock()
_server: ForkServer | None = None


def shared_server(env: dict[str, str], cwd: str) -> ForkServer:
    """The process's server for this environment: started on first use, and again after it
    died; a new one when the environment changed (Ansible reads it when it is imported)."""
    global _server
    with _servers_lock:
        server = _server
        if server is not None and server.dead is None and server.env == env:
            return server
        if server is not None and server.dead is None:
            server.retire()
        _server = ForkServer(env, cwd)
        return _server


def current_server() -> ForkServer | None:
    """The server started last, if any (tests look at its process)."""
    return _server


if __name__ == "__main__":
    sys.exit(main(sys.argv))
