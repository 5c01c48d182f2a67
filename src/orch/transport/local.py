"""The orchestrator's own machine as a transport: a process group per command, plain file ops.

Commands run in a new session so that a timeout or cancel can kill everything they started
(``killpg``), not only the shell. Output is read with a selector in the calling thread: no
thread per command, which keeps the per-operation overhead to the cost of the fork itself.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

from orch.transport.base import (
    CommandResult,
    FileStream,
    FileTransferError,
    LineSink,
    TransportError,
    failure_cause,
)

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL of a command's process group."""

TICK = 0.05
"""How often a waiting command checks its cancel event and deadline (seconds)."""

DRAIN_GRACE = 0.2
"""After the shell exits, how long output pipes still held open by its background children are
read before the command is considered done."""


class LineSplitter:
    """Turns chunks of bytes into text lines for ``on_line``, keeping the whole text too."""

    def __init__(self, stream: str, on_line: LineSink | None):
        self.stream = stream
        self.on_line = on_line
        self.chunks: list[bytes] = []
        self.partial = b""

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.on_line is None:
            return
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        for line in lines:
            self.on_line(self.stream, line.decode("utf-8", "replace"))

    def close(self) -> str:
        """Flush a last unterminated line; returns everything received, decoded."""
        if self.on_line is not None and self.partial:
            self.on_line(self.stream, self.partial.decode("utf-8", "replace"))
        self.partial = b""
        return b"".join(self.chunks).decode("utf-8", "replace")


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has live members. Zombies do not count: where PID 1 reaps
    orphans slowly (plain containers), ``killpg(pgid, 0)`` would see the dead for seconds."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    if not entries:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _write_stdin(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()


class LocalTransport:
    """Runs commands with ``/bin/sh -c`` on this machine."""

    host = "localhost"

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
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=os.environ | env if env else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            where = f" in {cwd}" if cwd and not os.path.isdir(cwd) else ""
            raise TransportError(f"localhost: cannot run /bin/sh{where}: {exc.strerror or exc}",
                                 host=self.host) from exc
        if stdin is not None:
            threading.Thread(target=_write_stdin, args=(proc.stdin, stdin), daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        out = LineSplitter("stdout", on_line)
        err = LineSplitter("stderr", on_line)
        timed_out = cancelled = False
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            for pipe, sink in ((proc.stdout, out), (proc.stderr, err)):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ, sink)
            exited_at: float | None = None
            while sel.get_map():
                left = TICK if deadline is None else deadline - time.monotonic()
                events = sel.select(max(0.0, min(TICK, left)))
                for key, _ in events:
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data.feed(data)
                    else:
                        sel.unregister(key.fileobj)
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    timed_out = True
                    break
                if events:
                    continue
                # Idle pipes after the shell exited: all it wrote has been read (it was in the
                # pipes before it exited). Background children that keep them open get a short
                # grace, not a wait for ever.
                if exited_at is None:
                    if proc.poll() is not None:
                        exited_at = now
                elif now - exited_at > DRAIN_GRACE:
                    break
        if timed_out or cancelled:
            self._kill(proc)
        else:
            while proc.poll() is None:
                # EOF on both pipes: the shell is about to exit, but may still be running
                if cancel is not None and cancel.is_set():
                    cancelled = True
                elif deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                if timed_out or cancelled:
                    self._kill(proc)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(TICK)
        proc.stdout.close()
        proc.stderr.close()
        rc = None if timed_out or cancelled else proc.returncode
        return CommandResult(rc, out.close(), err.close(), timed_out=timed_out,
                             cancelled=cancelled)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """SIGTERM the command's whole process group, SIGKILL what is left after a grace."""
        _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(proc.pid):
                break
            time.sleep(0.01)
        else:
            _killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    # -- files ------------------------------------------------------------------------------

    def _fail(self, what: str, path: str, exc: OSError) -> TransportError:
        return TransportError(f"localhost: cannot {what} {path}: {exc.strerror or exc}",
                              host=self.host)

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        try:
            shutil.copyfile(local_path, remote_path)
            os.chmod(remote_path, mode if mode is not None
                     else os.stat(local_path).st_mode & 0o7777)
        except OSError as exc:
            raise self._fail("copy to", remote_path, exc) from exc

    def put_bytes(self, data: bytes, remote_path: str, mode: int | None = None) -> None:
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            fd = os.open(remote_path, flags, 0o666 if mode is None else mode)
            with os.fdopen(fd, "wb") as handle:
                if mode is not None:
                    os.fchmod(handle.fileno(), mode)
                handle.write(data)
        except OSError as exc:
            raise self._fail("write", remote_path, exc) from exc

    def get_bytes(self, remote_path: str) -> bytes:
        try:
            with open(remote_path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise self._fail("read", remote_path, exc) from exc

    def makedirs(self, remote_path: str) -> None:
        try:
            os.makedirs(remote_path, exist_ok=True)
        except OSError as exc:
            raise self._fail("create", remote_path, exc) from exc

    def remove_tree(self, remote_path: str) -> None:
        try:
            shutil.rmtree(remote_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail("remove", remote_path, exc) from exc

    def home(self) -> str:
        return os.path.expanduser("~")

    @contextlib.contextmanager
    def file_session(self, cancel: threading.Event | None = None) -> Iterator[LocalFiles]:
        """Plain files of this machine, with the same calls as an SFTP session."""
        yield LocalFiles(self.host)

    def close(self) -> None:
        """Nothing to release: each command owns its process."""


class LocalFiles:
    """This machine's files for streamed transfers (``FileSession``)."""

    def __init__(self, host: str = "localhost"):
        self.host = host

    def _fail(self, what: str, path: str, exc: OSError) -> FileTransferError:
        cause = failure_cause(exc)
        return FileTransferError(f"{self.host}: cannot {what} {path}: {cause}",
                                 host=self.host, path=path, cause=cause)

    def open_read(self, path: str) -> FileStream:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the stream owns it
        except OSError as exc:
            raise self._fail("read", path, exc) from exc
        info = os.fstat(handle.fileno())
        return FileStream(handle, path, self.host, (OSError,), info.st_size,
                          info.st_mode & 0o7777)

    def open_write(self, path: str, mode: int) -> FileStream:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        except OSError as exc:
            raise self._fail("write", path, exc) from exc
        try:
            os.fchmod(fd, mode)  # not narrowed by the umask
        except OSError as exc:
            os.close(fd)
            raise self._fail("set the mode of", path, exc) from exc
        return FileStream(os.fdopen(fd, "wb"), path, self.host, (OSError,), 0, mode)

    def rename(self, source: str, target: str) -> None:
        try:
            os.replace(source, target)
        except OSError as exc:
            raise self._fail(f"rename {source} to", target, exc) from exc

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail("remove", path, exc) from exc
