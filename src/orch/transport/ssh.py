"""Hosts reached over SSH (paramiko): one connection per host, many channels on it at once.

Each command is a small script sent on the channel's stdin to ``/bin/sh -s`` (secrets stay off
command lines). It runs the command under ``setsid`` and reports its process group first (a
marker line on stderr), so a timeout or cancel kills the whole remote tree over a second channel
instead of only closing ours (sshd does not signal a command whose channel closes without a
pty); end markers on both streams say when all output is in. A connection found dead is
re-opened once, transparently, when nothing had started on it yet.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import secrets
import selectors
import shlex
import threading
import time
from collections import deque
from collections.abc import Iterator

import paramiko
from paramiko.sftp import CMD_DATA, CMD_READ, SFTPError, int64

from orch.transport.base import (
    CommandResult,
    FileStream,
    FileTransferError,
    Host,
    HostKeyPolicy,
    LineSink,
    Transport,
    TransportError,
    failure_cause,
)
from orch.transport.local import KILL_GRACE, TICK, LineSplitter, LocalTransport
from orch.transport.ssh_connect import DEFAULT_KNOWN_HOSTS as DEFAULT_KNOWN_HOSTS
from orch.transport.ssh_connect import SshConnector, _Connection
from orch.transport.ssh_connect import fingerprint as fingerprint

# paramiko logs dropped connections at ERROR: without a handler Python would print them
logging.getLogger("paramiko").addHandler(logging.NullHandler())

END_GRACE = 2.0
"""How long to wait for the end markers once the exit status came without them."""

MAX_CHANNELS = 6
"""Commands running at once on one connection. sshd's MaxSessions defaults to 10 sessions per
connection, SFTP and the kill commands of timed-out operations included."""

MAX_FILE_SESSIONS = 2
"""Streamed transfers (SFTP sessions of their own, ``file_session``) at once on one connection:
with ``MAX_CHANNELS`` and the shared SFTP client, within sshd's default of 10 sessions."""

READ_WINDOW = 4 * 1024 * 1024
"""Bytes of read requests a download has in flight at once: fast on a distant site, while
what waits in memory stays bounded."""

READ_REQUEST = 32768
"""One SFTP read request (paramiko's largest)."""

_SFTP_ERRORS = (paramiko.SSHException, SFTPError, EOFError, OSError)

_PGID_LINE = re.compile(rb"(?:^|\n)(__orch_pgid__=(\d+)\n)")
# run by setsid: report the new process group, then become the command
_LAUNCH = 'printf "%s\\n" "__orch_pgid__=$$" >&2; exec /bin/sh -c "$1"'
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def end_marker(token: str) -> bytes:
    return b"\x1eorch-end-" + token.encode() + b"\x1e"


REMOTE_SHELL = "exec /bin/sh -s"
"""What sshd runs for every command: the script itself comes on stdin. Secrets in the exported
values never reach a command line, which other users of a login node can read with ps, and
the login shell may be anything (csh included)."""


def remote_script(command: str, env: dict[str, str] | None, cwd: str | None, token: str,
                  stdin: bytes | None = None) -> bytes:
    """The script fed to ``REMOTE_SHELL``: exports (sshd usually refuses setenv), cd, the
    command in its own session, then ``end_marker(token)`` on both streams once it is done.

    sshd may send the exit status before the last output, and a background child may keep the
    streams open for ever: the markers say when everything the command wrote has arrived. The
    command's input is ``stdin`` (decoded from base64 in the script: the channel's own input is
    the script) or /dev/null. The script ends with ``exit``, so the channel needs no EOF from
    us. Names that are not shell identifiers cannot be exported and are skipped."""
    # bash lowered SHLVL to 0 when it exec'd us: a bash started by the command would then take
    # itself for sshd's and source ~/.bashrc again (slow, and it changes PATH)
    lines = ['[ "${SHLVL:-0}" -gt 0 ] 2>/dev/null || export SHLVL=1']
    lines += [f"export {name}={shlex.quote(value)}"
              for name, value in (env or {}).items() if _ENV_NAME.match(name)]
    if cwd:
        lines.append(f"cd {shlex.quote(cwd)} || exit 1")
    launch = f"$_orch_s /bin/sh -c {shlex.quote(_LAUNCH)} orch {shlex.quote(command)}"
    if stdin is None:
        launch += " </dev/null"
    else:
        data = base64.b64encode(stdin).decode()
        launch = f"printf %s {data or chr(39) * 2} | base64 -d | {launch}"
    end = f"'\\036orch-end-{token}\\036'"
    lines += [
        "_orch_s=setsid; command -v setsid >/dev/null 2>&1 || _orch_s=",
        # setsid must not be a process group leader (else it forks and returns at once): it is
        # a child of this shell, never exec'd
        launch,
        "_orch_rc=$?",
        f"printf {end}; printf {end} >&2",
        "exit $_orch_rc",
        "",
    ]
    return "\n".join(lines).encode()


def kill_command(pgid: int) -> str:
    """TERM the process group, KILL it if still there after ``KILL_GRACE``; returns when gone.

    Members are looked up with ps, ignoring zombies: where PID 1 reaps orphans slowly (plain
    containers), ``kill -0`` would see the dead for seconds."""
    rounds = int(KILL_GRACE / 0.05)
    return (
        f"P={pgid}\n"
        "alive() { ps -eo pgid=,stat= | awk -v p=\"$P\" '$1==p && $2!~/^Z/{f=1} END{exit !f}'; }\n"
        "command -v ps >/dev/null 2>&1 || alive() { kill -0 -$P 2>/dev/null; }\n"
        "kill -TERM -$P 2>/dev/null || kill -TERM $P 2>/dev/null || exit 0\n"
        "i=0\n"
        "while alive; do\n"
        f"  i=$((i+1)); if [ $i -gt {rounds} ]; then kill -KILL -$P 2>/dev/null; exit 0; fi\n"
        "  sleep 0.05\n"
        "done\n"
    )


class _EndFilter:
    """Passes a stream on until orch's end marker; what comes after (a background child's
    late output) is dropped."""

    def __init__(self, marker: bytes, sink):
        self.marker = marker
        self.sink = sink
        self.held = b""
        self.ended = False

    def feed(self, data: bytes) -> None:
        if self.ended:
            return
        data = self.held + data
        self.held = b""
        index = data.find(self.marker)
        if index >= 0:
            self.ended = True
            data = data[:index]
        else:
            # hold back a tail that may be the start of a marker split across two chunks
            start = data.rfind(self.marker[:1], max(0, len(data) - len(self.marker)))
            if start >= 0 and self.marker.startswith(data[start:]):
                data, self.held = data[:start], data[start:]
        if data:
            self.sink.feed(data)

    def flush(self) -> None:
        if self.held:
            self.sink.feed(self.held)
        self.held = b""


class _StderrFilter:
    """Takes the process-group marker line out of stderr before it reaches the splitter."""

    def __init__(self, sink: _EndFilter):
        self.sink = sink
        self.held = b""
        self.pgid: int | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        if self.done:
            self.sink.feed(data)
            return
        self.held += data
        found = _PGID_LINE.search(self.held)
        if found is None:
            if len(self.held) > 65536:  # no marker coming (no setsid line): stop holding
                self.flush()
            return
        self.pgid = int(found.group(2))
        rest = self.held[: found.start(1)] + self.held[found.end(1):]
        self.held = b""
        self.done = True
        if rest:
            self.sink.feed(rest)

    def flush(self) -> None:
        if self.held:
            self.sink.feed(self.held)
        self.held = b""
        self.done = True


class SshTransport:
    """A host over SSH; the connection opens at first use and re-opens when found dead."""

    def __init__(self, target: Host, policy: HostKeyPolicy, connect_timeout: float = 10.0,
                 on_connect=None, max_channels: int = MAX_CHANNELS):
        self.target = target
        self.policy = policy
        self.connect_timeout = connect_timeout
        self._connector = SshConnector(target, policy, connect_timeout, on_connect)
        self.user = self._connector.user
        self.host = self._connector.host
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._channels = threading.BoundedSemaphore(max_channels)
        self._file_sessions = threading.BoundedSemaphore(MAX_FILE_SESSIONS)

    # -- connection -------------------------------------------------------------------------

    def known_hosts_files(self) -> list[str]:
        return self._connector.known_hosts_files()

    def _error(self, cause: str, started: bool = False) -> TransportError:
        return TransportError(f"{self.host}: {cause}", host=self.host, started=started)

    def _open(self) -> _Connection:
        return self._connector.open()

    def _connection(self) -> tuple[_Connection, bool]:
        """The live connection, and whether it was opened just now."""
        with self._lock:
            conn = self._conn
            if conn is not None and conn.alive():
                return conn, False
            if conn is not None:
                conn.close()
                self._conn = None
            self._conn = self._open()
            return self._conn, True

    def _drop(self, conn: _Connection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    # -- commands ---------------------------------------------------------------------------

    def _start(self, script: bytes) -> tuple[_Connection, paramiko.Channel]:
        """Open a channel and start ``script``, re-opening a stale connection once.

        No EOF is ever sent on the channel: paramiko sends it outside its channel lock, so it
        can follow our CLOSE when the command ends at once, and sshd then drops the whole
        connection (paramiko#1705)."""
        for attempt in range(2):
            conn, fresh = self._connection()
            try:
                chan = conn.transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if conn.alive():  # refused by a live server: the connection serves others
                    raise self._error(f"cannot open a channel: {exc}") from None
                self._drop(conn)
                if fresh or attempt:
                    raise self._error(f"connection lost: {exc}") from None
                continue
            try:
                chan.exec_command(REMOTE_SHELL)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                chan.close()
                if conn.alive():  # the server refused the request: nothing ran
                    raise self._error(f"the server refused to run the command: {exc}") from None
                self._drop(conn)
                raise self._error("connection lost while starting the command",
                                  started=True) from None
            try:
                chan.sendall(script)
            except (paramiko.SSHException, EOFError, OSError):
                chan.close()
                self._drop(conn)
                raise self._error("connection lost while starting the command",
                                  started=True) from None
            return conn, chan
        raise AssertionError("unreachable")

    def run(
        self,
        command: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        on_line: LineSink | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        # wait for a channel slot; a cancel while waiting means the command never started
        while not self._channels.acquire(timeout=TICK):
            if cancel is not None and cancel.is_set():
                return CommandResult(None, cancelled=True)
        try:
            return self._run(command, env, cwd, timeout, cancel, on_line, stdin)
        finally:
            self._channels.release()

    def _run(self, command: str, env: dict[str, str] | None, cwd: str | None,
             timeout: float | None, cancel: threading.Event | None, on_line: LineSink | None,
             stdin: bytes | None) -> CommandResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        token = secrets.token_hex(8)
        conn, chan = self._start(remote_script(command, env, cwd, token, stdin))
        out_lines = LineSplitter("stdout", on_line)
        err_lines = LineSplitter("stderr", on_line)
        out = _EndFilter(end_marker(token), out_lines)
        err = _StderrFilter(_EndFilter(end_marker(token), err_lines))
        timed_out = cancelled = False
        try:
            timed_out, cancelled = self._pump(chan, out, err, deadline, cancel)
            if timed_out or cancelled:
                self._kill(conn, chan, err)
        except (paramiko.SSHException, EOFError, OSError):
            pass  # judged below from the state of the connection
        finally:
            chan.close()
        err.flush()
        err.sink.flush()
        out.flush()
        stdout, stderr = out_lines.close(), err_lines.close()
        if timed_out or cancelled:
            return CommandResult(None, stdout, stderr, timed_out=timed_out, cancelled=cancelled)
        if chan.exit_status == -1 and self._lost(conn):
            self._drop(conn)
            raise self._error("connection lost while the command was running", started=True)
        # -1: the server closed the channel without a status (the shell was killed by a signal)
        return CommandResult(chan.exit_status, stdout, stderr)

    @staticmethod
    def _lost(conn: _Connection) -> bool:
        """Whether the connection died (paramiko closes channels just before it says so)."""
        until = time.monotonic() + 1.0
        while conn.alive():
            if time.monotonic() > until:
                return False
            time.sleep(0.01)
        return True

    @staticmethod
    def _pump(chan: paramiko.Channel, out: _EndFilter, err: _StderrFilter,
              deadline: float | None, cancel: threading.Event | None) -> tuple[bool, bool]:
        """Read until both end markers (or EOF) and the exit status; returns (timed_out,
        cancelled)."""

        def drain() -> None:
            while chan.recv_ready():
                out.feed(chan.recv(65536))
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(65536))

        exited_at: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(chan.fileno(), selectors.EVENT_READ)
            while True:
                drain()
                if cancel is not None and cancel.is_set():
                    return False, True
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return True, False
                wait = TICK if deadline is None else max(0.0, min(TICK, deadline - now))
                # paramiko's thread queues data before EOF, status and close: once one of those
                # is seen, a last drain gets everything that came before it
                if chan.closed:
                    break
                if chan.eof_received or (out.ended and err.sink.ended):
                    if chan.exit_status_ready():
                        break
                    chan.status_event.wait(wait)
                    continue
                if chan.exit_status_ready():
                    # a status but no end marker: the shell was killed; do not wait for ever
                    if exited_at is None:
                        exited_at = now
                    elif now - exited_at > END_GRACE:
                        break
                sel.select(wait)
        drain()
        return False, False

    def _kill(self, conn: _Connection, chan: paramiko.Channel, err: _StderrFilter) -> None:
        """Kill the command's remote process group (waiting briefly for its marker)."""
        until = time.monotonic() + 1.0
        while err.pgid is None and not chan.closed and time.monotonic() < until:
            if chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(65536))
            else:
                time.sleep(0.01)
        if err.pgid is None or not conn.alive():
            return
        with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            self._exec_raw(conn, kill_command(err.pgid), KILL_GRACE + self.connect_timeout)

    def _exec_raw(self, conn: _Connection, line: str, timeout: float) -> tuple[int, bytes]:
        """A short internal command on ``conn``: (exit status, stdout)."""
        chan = conn.transport.open_session(timeout=self.connect_timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(line)  # no shutdown_write: see _run
            data = b""
            while True:
                chunk = chan.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not chan.status_event.wait(timeout):
                raise TimeoutError()
            return chan.exit_status, data
        finally:
            chan.close()

    # -- files ------------------------------------------------------------------------------

    def _sftp(self, what: str, path: str, action):
        """Run ``action(sftp)`` on the connection's SFTP client; a stale connection is
        re-opened once; file errors become TransportError naming the path."""
        for attempt in range(2):
            conn, fresh = self._connection()
            try:
                with conn.sftp_lock:
                    if conn.sftp is None:
                        conn.sftp = conn.client.open_sftp()
                    return action(conn.sftp)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if conn.alive():
                    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    raise self._error(f"cannot {what} {path}: {cause}") from exc
                self._drop(conn)
                if fresh or attempt:
                    raise self._error(f"connection lost: {exc}") from None
        raise AssertionError("unreachable")

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        if mode is None:
            try:
                mode = os.stat(local_path).st_mode & 0o7777
            except OSError as exc:
                raise self._error(f"cannot read {local_path}: {exc.strerror}") from exc

        def action(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(remote_path, "wb") as handle:
                handle.set_pipelined(True)
                handle.chmod(mode)
                with open(local_path, "rb") as source:
                    while chunk := source.read(32768):
                        handle.write(chunk)

        self._sftp("write", remote_path, action)

    def put_bytes(self, data: bytes, remote_path: str, mode: int | None = None) -> None:
        def action(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(remote_path, "wb") as handle:
                handle.set_pipelined(True)
                if mode is not None:
                    handle.chmod(mode)
                handle.write(data)

        self._sftp("write", remote_path, action)

    def get_bytes(self, remote_path: str) -> bytes:
        def action(sftp: paramiko.SFTPClient) -> bytes:
            buffer = io.BytesIO()
            sftp.getfo(remote_path, buffer)
            return buffer.getvalue()

        return self._sftp("read", remote_path, action)

    def makedirs(self, remote_path: str) -> None:
        def mkdirs(sftp: paramiko.SFTPClient, path: str) -> None:
            try:
                sftp.stat(path)
                return
            except FileNotFoundError:
                pass
            parent = path.rstrip("/").rsplit("/", 1)[0]
            if parent and parent != path:
                mkdirs(sftp, parent)
            try:
                sftp.mkdir(path)
            except OSError:
                sftp.stat(path)  # created meanwhile by another thread or process: fine

        self._sftp("create", remote_path, lambda sftp: mkdirs(sftp, remote_path))

    def remove_tree(self, remote_path: str) -> None:
        result = self.run(f"rm -rf -- {shlex.quote(remote_path)}")
        if result.rc != 0:
            raise self._error(f"cannot remove {remote_path}: {result.stderr.strip()}")

    def home(self) -> str:
        """The login directory, asked once per connection (SFTP starts there)."""
        conn, _ = self._connection()
        if conn.home is None:
            conn.home = self._sftp("find the home of", self.user,
                                   lambda sftp: sftp.normalize("."))
        return conn.home

    @contextlib.contextmanager
    def file_session(self, cancel: threading.Event | None = None) -> Iterator[SftpFiles]:
        """An SFTP session of its own on the pooled connection, for long streamed transfers:
        the shared client serves one thread at a time and must not wait for gigabytes."""
        while not self._file_sessions.acquire(timeout=TICK):
            if cancel is not None and cancel.is_set():
                raise self._error("cancelled while waiting for a transfer slot")
        try:
            sftp = self._open_sftp()
            try:
                yield SftpFiles(sftp, self.host)
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    sftp.close()
        finally:
            self._file_sessions.release()

    def _open_sftp(self) -> paramiko.SFTPClient:
        """A new SFTP channel, re-opening a stale connection once."""
        for attempt in range(2):
            conn, fresh = self._connection()
            try:
                sftp = paramiko.SFTPClient.from_transport(conn.transport)
            except _SFTP_ERRORS as exc:
                sftp = None
                if conn.alive():
                    raise self._error(f"cannot open an SFTP session: {exc}") from None
                self._drop(conn)
                if fresh or attempt:
                    raise self._error(f"connection lost: {exc}") from None
                continue
            if sftp is None:
                raise self._error("cannot open an SFTP session")
            return sftp
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class SftpFiles:
    """A host's files over one SFTP session (``FileSession``): pipelined writes, prefetched
    reads, atomic renames (OpenSSH's posix-rename)."""

    def __init__(self, sftp: paramiko.SFTPClient, host: str):
        self.sftp = sftp
        self.host = host

    def _fail(self, what: str, path: str, exc: BaseException) -> FileTransferError:
        cause = failure_cause(exc)
        return FileTransferError(f"{self.host}: cannot {what} {path}: {cause}",
                                 host=self.host, path=path, cause=cause)

    def open_read(self, path: str) -> FileStream:
        try:
            handle = self.sftp.open(path, "rb")
        except _SFTP_ERRORS as exc:
            raise self._fail("read", path, exc) from exc
        try:
            info = handle.stat()
        except _SFTP_ERRORS as exc:
            with contextlib.suppress(Exception):
                handle.close()
            raise self._fail("read", path, exc) from exc
        size = info.st_size or 0
        return FileStream(_PipelinedReader(handle, size), path, self.host, _SFTP_ERRORS, size,
                          (info.st_mode or 0o644) & 0o7777)

    def open_write(self, path: str, mode: int) -> FileStream:
        try:
            handle = self.sftp.open(path, "wb")
        except _SFTP_ERRORS as exc:
            raise self._fail("write", path, exc) from exc
        try:
            handle.set_pipelined(True)
            handle.chmod(mode)
        except _SFTP_ERRORS as exc:
            with contextlib.suppress(Exception):
                handle.close()
            raise self._fail("set the mode of", path, exc) from exc
        return FileStream(handle, path, self.host, _SFTP_ERRORS, 0, mode)

    def rename(self, source: str, target: str) -> None:
        try:
            self.sftp.posix_rename(source, target)
        except _SFTP_ERRORS as exc:
            raise self._fail(f"rename {source} to", target, exc) from exc

    def remove(self, path: str) -> None:
        try:
            self.sftp.remove(path)
        except FileNotFoundError:
            pass
        except _SFTP_ERRORS as exc:
            raise self._fail("remove", path, exc) from exc


class _PipelinedReader:
    """Reads a remote file from start to end with ``READ_WINDOW`` bytes of read requests in
    flight, taking the answers in order, in the caller's thread.

    paramiko's ``prefetch`` sends its requests from a thread that its reader can overtake: it
    then falls back to one request per round trip and keeps the late answers in memory (a
    whole file's worth). This uses the same request calls as paramiko's own file objects."""

    def __init__(self, handle: paramiko.SFTPFile, size: int):
        self.sftp = handle.sftp
        self.handle = handle
        self.size = size
        self.asked = 0
        self.order: deque[tuple[int, int, int]] = deque()
        self.answers: dict[int, bytes | BaseException] = {}
        self.pending = b""

    def _request(self, offset: int, length: int) -> int:
        return self.sftp._async_request(self, CMD_READ, self.handle.handle, int64(offset),
                                        int(length))

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        """Called by paramiko with the answer to one of our requests."""
        if kind == CMD_DATA:
            self.answers[num] = msg.get_string()
            return
        try:
            self.sftp._convert_status(msg)
            self.answers[num] = SFTPError("unexpected answer to a read")
        except BaseException as exc:  # EOFError at the end of a file that shrank
            self.answers[num] = exc

    def _answer(self, num: int) -> bytes:
        while num not in self.answers:
            self.sftp._read_response()
        answer = self.answers.pop(num)
        if isinstance(answer, EOFError):
            return b""
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _block(self) -> bytes:
        while self.asked < self.size and len(self.order) * READ_REQUEST < READ_WINDOW:
            length = min(READ_REQUEST, self.size - self.asked)
            self.order.append((self._request(self.asked, length), self.asked, length))
            self.asked += length
        if not self.order:
            return b""
        num, offset, length = self.order.popleft()
        data = self._answer(num)
        while data and len(data) < length:  # a short read: ask for the rest
            more = self._answer(self._request(offset + len(data), length - len(data)))
            if not more:
                break
            data += more
        return data

    def read(self, size: int) -> bytes:
        parts = [self.pending]
        have = len(self.pending)
        while have < size:
            block = self._block()
            if not block:
                break
            parts.append(block)
            have += len(block)
        data = b"".join(parts)
        self.pending = data[size:]
        return data[:size]

    def close(self) -> None:
        self.handle.close()


class TransportPool:
    """One transport per host key (address, port, user) for a whole run; thread-safe."""

    def __init__(self, policy: HostKeyPolicy, connect_timeout: float = 10.0,
                 max_channels: int = MAX_CHANNELS):
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.max_channels = max_channels
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._local = LocalTransport()
        self._transports: dict[tuple[str, int, str], SshTransport] = {}

    def _opened(self) -> None:
        with self._lock:
            self.connections_opened += 1

    def get(self, host: Host) -> Transport:
        if host.is_local:
            return self._local
        with self._lock:
            transport = self._transports.get(host.key)
            if transport is None:
                transport = SshTransport(host, self.policy, self.connect_timeout, self._opened,
                                         self.max_channels)
                self._transports[host.key] = transport
            return transport

    def close_all(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            transport.close()
