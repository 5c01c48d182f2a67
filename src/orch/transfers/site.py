"""Landing files on a site, the same way for every source kind.

A source file (``SourceFile``) is streamed in chunks (``staging.CHUNK``) over an SFTP session
of the site's pooled connection to ``<final>.part``; orch hashes the bytes as they pass (sha256,
and md5 when the source states an md5), then one command on the site hashes the part, compares
it with orch's sum, renames it over the final name and sets its modification time to the
source's. Nothing is ever written under the final name before it is proven whole: a failed,
corrupt or cancelled transfer removes its part, and a part left by a killed orch is simply
overwritten by the next run (the transfer restarts from the beginning).

A file already on the site is skipped unless ``force``: when the source states a checksum and
the site's file has it, or, for sources without one (plain HTTP, WebDAV), when size and
modification time match what the source says (rsync's quick check: orch sets the time it
compares).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from orch.executors.builtin import expand_home, quote_path
from orch.executors.staging import CHUNK, Failed, Progress, Run, Stopped, human_size
from orch.transport.base import FileSession, FileTransferError, Transport, TransportError

PART_SUFFIX = ".part"
MARK = "::orch-dls::"
ALGORITHMS = ("md5", "sha256")
_SUM_COMMAND = {"md5": "md5sum", "sha256": "sha256sum"}


class Reader(Protocol):
    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class SourceFile:
    """One file a transfer brings to the site."""

    name: str
    """Its path under the destination folder (posix, relative, no ``..``)."""
    url: str
    """Where it comes from, for messages (no credentials)."""
    open: Callable[[], Reader]
    size: int | None = None
    checksum: tuple[str, str] | None = None
    """(``md5`` or ``sha256``, lowercase hex) when the source states one."""
    mtime: int | None = None
    """Seconds since the epoch when the source states a modification time."""
    release: Callable[[], None] | None = None
    """Frees what was opened to learn size and time (an HTTP answer) when the file is
    skipped or the transfer fails before ``open``."""


@dataclass
class Landed:
    """What a transfer did on the site: the operation's outputs."""

    path: str = ""
    files: int = 0
    skipped: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)

    def outputs(self) -> dict[str, str]:
        return {"path": self.path, "files": str(self.files), "skipped": str(self.skipped),
                "bytes": str(self.bytes)}


def parse_checksum(value: Any) -> tuple[str, str] | None:
    """``md5:abc...`` / ``sha256:...`` (B2SHARE, Digest headers) as (algorithm, hex)."""
    if not isinstance(value, str) or ":" not in value:
        return None
    algorithm, _, digest = value.partition(":")
    algorithm = algorithm.strip().lower().replace("-", "")
    digest = digest.strip().lower()
    if algorithm not in ALGORITHMS or not re.fullmatch(r"[0-9a-f]+", digest):
        return None
    if len(digest) != {"md5": 32, "sha256": 64}[algorithm]:
        return None
    return algorithm, digest


def safe_name(name: str) -> str | None:
    """A relative posix path that stays under its folder, or None."""
    name = name.replace("\\", "/").strip("/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any("\x00" in p for p in parts):
        return None
    return "/".join(parts)


def absolute(path: str, transport: Transport) -> str:
    return expand_home(path, transport)


def target_is_folder(run: Run, transport: Transport, path: str) -> bool:
    """Whether ``path`` is a folder on the site (a file then lands in it under its name)."""
    if path.endswith("/"):
        return True
    result = command(run, transport, f"[ -d {quote_path(path)} ] && echo {MARK}dir || :")
    return f"{MARK}dir" in result.stdout


def command(run: Run, transport: Transport, text: str, stdin: bytes | None = None) -> Any:
    try:
        return run.command(transport, text, stdin)
    except TransportError as exc:
        raise Failed(str(exc), started=exc.started) from exc


def error_lines(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or f"exit status {result.rc}"


@dataclass
class SiteFile:
    exists: bool
    size: int | None = None
    mtime: int | None = None
    digest: str | None = None


def site_file(run: Run, transport: Transport, final: str, algorithm: str | None) -> SiteFile:
    """Create the final file's folder; say whether the file is there, its size, time and (when
    ``algorithm``) checksum."""
    summing = f"{_SUM_COMMAND[algorithm]} < \"$F\" | cut -d' ' -f1" if algorithm else ":"
    text = "\n".join([
        f"F={quote_path(final)}",
        'mkdir -p -- "$(dirname -- "$F")" || exit 3',
        'if [ -f "$F" ]; then',
        f"  printf '\\n{MARK}%s\\n' \"$(stat -L -c '%s %Y' -- \"$F\")\"",
        f"  printf '{MARK}%s\\n' \"$({summing})\"",
        "fi",
    ])
    result = command(run, transport, text)
    if result.rc != 0:
        raise Failed(f"cannot create the folder of {final} on {run.host}: "
                     f"{error_lines(result)}")
    found = re.findall(re.escape(MARK) + r"(.*)", result.stdout)
    if not found:
        return SiteFile(False)
    size = mtime = None
    with contextlib.suppress(ValueError, IndexError):
        size_text, mtime_text = found[0].split()[:2]
        size, mtime = int(size_text), int(mtime_text)
    digest = found[1].strip().lower() if len(found) > 1 and algorithm else None
    return SiteFile(True, size, mtime, digest or None)


def same(source: SourceFile, there: SiteFile) -> str | None:
    """Why the site's file is the source's (for the log), or None."""
    if not there.exists:
        return None
    if source.checksum is not None:
        if there.digest == source.checksum[1]:
            return f"same {source.checksum[0]}"
        return None
    if (source.size is not None and source.mtime is not None and there.size == source.size
            and there.mtime == source.mtime):
        return "same size and modification time"
    return None


def land(run: Run, transport: Transport, files: FileSession, source: SourceFile, final: str,
         *, force: bool, tally: Landed, fail: Callable[[str], Failed]) -> None:
    """Bring one source file to ``final`` on the site (see the module's docstring).
    ``fail(why)`` builds the failure naming the transfer, its source and destination."""
    run.check()
    algorithm = source.checksum[0] if source.checksum and not force else None
    there = site_file(run, transport, final, algorithm)
    if not force:
        why = same(source, there)
        if why:
            if source.release is not None:
                source.release()
            tally.skipped += 1
            tally.paths.append(final)
            run.log(f"skipped {source.name}: {final} is already there ({why})")
            return
    part = final + PART_SUFFIX
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if source.checksum and \
        source.checksum[0] == "md5" else None
    progress = Progress(run, source.name, source.size)
    try:
        reader = source.open()
    except BaseException:
        if source.release is not None:
            source.release()
        raise
    try:
        out = files.open_write(part, 0o644)
    except FileTransferError as exc:
        reader.close()
        raise Failed(f"cannot write {run.host}:{part}: {exc.cause}") from exc
    try:
        try:
            for chunk in _read(run, reader, fail):
                sha256.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                out.write(chunk)
                progress.add(len(chunk))
            out.close()
        except BaseException:
            out.discard()
            raise
        finally:
            reader.close()
        if source.size is not None and progress.done != source.size:
            raise fail(f"got {progress.done} bytes, the source announced {source.size}")
        if source.checksum is not None:
            ours = (md5 if source.checksum[0] == "md5" else sha256)
            digest = ours.hexdigest() if ours is not None else ""
            if digest != source.checksum[1]:
                raise fail(f"checksum mismatch: the source states {source.checksum[0]} "
                           f"{source.checksum[1]}, the bytes received hash to {digest}")
        _commit(run, transport, part, final, sha256.hexdigest(), source.mtime, fail)
    except FileTransferError as exc:
        _remove(files, part)
        raise Failed(f"cannot write {run.host}:{part}: {exc.cause}") from exc
    except BaseException:
        _remove(files, part)
        raise
    tally.files += 1
    tally.bytes += progress.done
    tally.paths.append(final)
    run.log(f"transferred {source.name} ({human_size(progress.done)}) to {final}")


def _read(run: Run, reader: Reader, fail: Callable[[str], Failed]) -> Iterator[bytes]:
    while True:
        run.check()
        try:
            chunk = reader.read(CHUNK)
        except Stopped:
            raise
        except Exception as exc:
            run.check()  # a read cut short by cancel is a cancel, not a failure
            if getattr(reader, "cancelled", False):
                raise Stopped("cancelled", "cancelled") from exc
            raise fail(f"reading the source failed: {_cause(exc)}") from exc
        if not chunk:
            run.check()
            if getattr(reader, "cancelled", False):
                raise Stopped("cancelled", "cancelled")
            return
        yield chunk


def _cause(exc: BaseException) -> str:
    if isinstance(exc, FileTransferError):
        return exc.cause
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _commit(run: Run, transport: Transport, part: str, final: str, sha256: str,
            mtime: int | None, fail: Callable[[str], Failed]) -> None:
    """One command: the site hashes the part, and only if orch's sum agrees renames it."""
    touch = f'touch -m -d @{int(mtime)} -- "$F" 2>/dev/null || :' if mtime is not None else ":"
    text = "\n".join([
        f"P={quote_path(part)}",
        f"F={quote_path(final)}",
        "S=$(sha256sum < \"$P\" | cut -d' ' -f1) || exit 3",
        f'if [ "$S" != {shlex.quote(sha256)} ]; then',
        f'  printf "{MARK}%s\\n" "$S"; rm -f -- "$P"; exit 9',
        "fi",
        'mv -f -- "$P" "$F" || exit 4',
        touch,
    ])
    result = command(run, transport, text)
    if result.rc == 9:
        theirs = result.stdout.rpartition(MARK)[2].strip()
        raise fail(f"corrupt on the site: {part} hashes to sha256 {theirs}, orch sent {sha256}")
    if result.rc != 0:
        raise Failed(f"cannot put {final} in place on {run.host}: {error_lines(result)}")


def _remove(files: FileSession, path: str) -> None:
    with contextlib.suppress(Exception):
        files.remove(path)


@contextlib.contextmanager
def file_session(run: Run, transport: Transport) -> Iterator[FileSession]:
    opener: Callable[..., Any] | None = getattr(transport, "file_session", None)
    if opener is None:
        raise Failed(f"{run.host}: this host's transport cannot stream files")
    try:
        with opener(run.context.cancel) as files:
            yield files
    except TransportError as exc:
        if run.context.cancel.is_set():
            raise Stopped("cancelled", "cancelled") from exc
        if isinstance(exc, FileTransferError):
            raise
        raise Failed(str(exc), started=exc.started) from exc


def join(folder: str, name: str) -> str:
    return posixpath.join(folder, name)


__all__ = ["PART_SUFFIX", "Landed", "Reader", "SourceFile", "absolute", "file_session", "join",
           "land", "parse_checksum", "safe_name", "same", "site_file", "target_is_folder"]
