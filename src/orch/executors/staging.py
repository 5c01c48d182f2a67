"""Data staged in and out of a site: ``orch.nodes.StageIn`` uploads a file or folder of orch's
machine, ``orch.nodes.StageOut`` downloads one (``tosca_types/orch-data.yaml``).

Files are compared by sha256 first, so that a second run moves only what changed: the site
hashes every candidate in one command, orch hashes its own copies in chunks. The rest streams
in 1 MiB chunks over an SFTP session of the pooled connection (plain files when the host is
orch's machine) to a temporary name, renamed only once the bytes written are proven to hash
like the source: a half transfer never looks complete. Cancel and timeout are checked between
chunks; a failure names the file, the host and the cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from orch.executors.base import TAIL_LINES, OperationResult, OperationStatus, RunContext, Task
from orch.executors.builtin import (
    accepts_builtin,
    deployment_dir,
    expand_home,
    node_dir,
    quote_path,
    remove_if_empty,
    safe_segment,
    work_root,
)
from orch.executors.masking import Masker
from orch.transport.base import (
    CommandResult,
    FileSession,
    FileTransferError,
    Transport,
    TransportError,
    failure_cause,
)

CHUNK = 1024 * 1024
"""Bytes read, hashed and written at a time: a file is never held whole in memory."""
BATCH_FILES = 256
BATCH_BYTES = 1024**3
"""Uploads are verified by the site (one sha256 command) and renamed in batches of this many
files or bytes: an interruption loses at most one batch."""
PART = ".orch-part."
"""Prefix of the temporary names of files being written (never listed as data)."""
PROGRESS_SECONDS = 10.0
"""How often a long file reports how far it got."""

_HASH = re.compile(r"[0-9a-f]{64}")
ROOT_MARK = "::orch-stage-root::"
"""Starts the line that gives the resolved folder: what a login shell prints before it (a
banner) is not taken for an answer."""
_SUM_SETUP = ("SUM=sha256sum; command -v sha256sum >/dev/null 2>&1 || SUM='shasum -a 256'; "
              "export SUM")
_PREPARE_BATCH = r"""n=$#
for f; do case $f in */) [ -d "$f" ] || set -- "$@" "$f";; esac; done
if [ $# -gt $n ]; then (shift $n; exec mkdir -p -- "$@") || exit 255; fi
k=$#
for f; do case $f in */) ;; *) [ ! -f "$f" ] || set -- "$@" "$f";; esac; done
shift $k
[ $# -eq 0 ] || exec $SUM -- "$@"
"""
"""Run by xargs on a batch of ``./folder/`` and ``./file`` names: one ``mkdir -p`` of the
missing folders, one sha256 of the files already there."""


# -- the operation ----------------------------------------------------------------------------


class Failed(Exception):
    """The operation fails with this message (already naming the file, host and cause);
    ``started`` False only when the connection failed before anything ran (then retried)."""

    def __init__(self, message: str, started: bool = True):
        super().__init__(message)
        self.started = started


class Stopped(Exception):
    """Cancelled or timed out between two chunks."""

    def __init__(self, status: OperationStatus, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Tally:
    """What a transfer did, returned as the operation's outputs."""

    files: int = 0
    skipped: int = 0
    bytes: int = 0
    path: str = ""

    def outputs(self) -> dict[str, str]:
        return {"path": self.path, "files": str(self.files), "skipped": str(self.skipped),
                "bytes": str(self.bytes)}


@dataclass
class Run:
    """One stage operation: its task, what the engine lends it, and its limits."""

    task: Task
    context: RunContext
    mask: Masker
    deadline: float | None
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.task.host.describe()

    def log(self, line: str, stream: str = "stdout") -> None:
        line = one_line(self.mask(line))
        self.lines = [*self.lines[-(TAIL_LINES - 1):], line]
        self.context.log(stream, line)

    def check(self) -> None:
        """Between two chunks: stop now if cancelled or out of time."""
        if self.context.cancel.is_set():
            raise Stopped("cancelled", "cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise Stopped("timeout", f"timed out after {self.task.timeout:g} s")

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.1, self.deadline - time.monotonic())

    def command(self, transport: Transport, command: str, stdin: bytes | None = None
                ) -> CommandResult:
        """A command on the host, under the operation's cancel and deadline."""
        result = transport.run(command, timeout=self.remaining(), cancel=self.context.cancel,
                               stdin=stdin)
        if result.cancelled:
            raise Stopped("cancelled", "cancelled")
        if result.timed_out:
            raise Stopped("timeout", f"timed out after {self.task.timeout:g} s")
        return result


class StagingExecutor:
    """Carries out ``orch.nodes.StageIn`` and ``orch.nodes.StageOut`` (file ``stage``)."""

    name = "stage"
    kinds = "orch.artifacts.Builtin 'stage'"

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        return accepts_builtin(self.name, implementation, artifact_type)

    def run(self, task: Task, context: RunContext) -> OperationResult:
        mask = Masker(task.secret_values)
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        run = Run(task, context, mask, deadline)
        try:
            run.check()
            transport = context.transport(task.host)
            outputs = _operation(run, transport)
        except Stopped as exc:
            return _result(run, exc.status, str(exc))
        except Failed as exc:
            return _result(run, "failed", str(exc), started=exc.started)
        except TransportError as exc:
            return _result(run, "failed", str(exc), started=exc.started)
        return _result(run, "ok", outputs=outputs)


def _result(run: Run, status: OperationStatus, message: str = "", *, started: bool = True,
            outputs: dict[str, str] | None = None) -> OperationResult:
    tail = list(run.lines)  # what went before: the message itself is shown apart
    if status != "ok":
        run.log(message, "stderr")
    return OperationResult(
        status, rc=0 if status == "ok" else None, message=one_line(run.mask(message)),
        outputs={k: run.mask(v) for k, v in (outputs or {}).items()},
        stdout_tail=tail, started=started,
    )


def _operation(run: Run, transport: Transport) -> dict[str, str]:
    """``delete`` removes what was staged in, ``stop`` does nothing, the others transfer."""
    operation = run.task.operation
    if operation == "stop":
        return {}
    if operation == "delete":
        return remove_staged(run, transport)
    direction = str(run.task.inputs.get("direction") or "")
    if direction == "in":
        return stage_in(run, transport)
    if direction == "out":
        return stage_out(run, transport)
    raise Failed(f"{run.task.label}: the stage executor needs the operation input direction "
                 "(in or out): use orch.nodes.StageIn or orch.nodes.StageOut")


# -- names and sizes ----------------------------------------------------------------------------


def human_size(size: float) -> str:
    """``12.0 MiB``: sizes as people read them in logs."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def one_line(text: str) -> str:
    """Control characters (a newline in a file name) escaped: a log line stays one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m[0])[1:-1], text)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex on paths relative to the staged folder: ``*`` and ``?`` stay within
    a folder, ``**/`` crosses any number; a pattern without ``/`` matches a file name in any
    folder (``*.csv``)."""
    pattern = pattern.strip().removeprefix("./")
    if "/" not in pattern:
        pattern = "**/" + pattern
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            token, i = _glob_token(pattern, i)
            out.append(token)
    return re.compile("".join(out) + r"\Z", re.S)


def _glob_token(pattern: str, i: int) -> tuple[str, int]:
    """One glob element (``*``, ``?``, ``[...]`` or a character) as regex, and where next."""
    char = pattern[i]
    if char == "*":
        return "[^/]*", i + 1
    if char == "?":
        return "[^/]", i + 1
    end = pattern.find("]", i + 2) if char == "[" else -1
    if end < 0:
        return re.escape(char), i + 1
    body = pattern[i + 1:end]
    if body.startswith("!"):
        body = "^" + body[1:]
    return "[" + body.replace("\\", "\\\\") + "]", end + 1


class Includes:
    """The ``include`` patterns of a node: all files when there are none."""

    def __init__(self, patterns: Any):
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = [str(p) for p in (patterns or []) if str(p).strip()]
        self.regexes = [glob_regex(p) for p in self.patterns]

    def __call__(self, rel: str) -> bool:
        return not self.regexes or any(r.match(rel) for r in self.regexes)

    def find_filter(self) -> str:
        """find(1) tests selecting a superset of the matches (its ``*`` also crosses ``/``)."""
        if not self.patterns:
            return ""
        tests = []
        for pattern in self.patterns:
            pattern = pattern.strip().removeprefix("./")
            if "/" in pattern:
                tests.append("-path " + shlex.quote("./" + pattern.replace("**", "*")))
            else:
                tests.append("-name " + shlex.quote(pattern))
        return r"\( " + " -o ".join(tests) + r" \)"


def parse_sums(text: str) -> dict[str, str]:
    """sha256sum's output as {path without ./: digest}; names holding a newline or a
    backslash come escaped on a line starting with ``\\``."""
    sums: dict[str, str] = {}
    for line in text.split("\n"):
        escaped = line.startswith("\\")
        if escaped:
            line = line[1:]
        digest, name = line[:64], line[66:]
        if not _HASH.fullmatch(digest) or line[64:65] != " ":
            continue
        if escaped:
            name = _unescape(name)
        sums[name.removeprefix("./")] = digest
    return sums


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), name)


def _dot(rel: str) -> str:
    return "./" + rel


def _nul_list(names: Iterable[str]) -> bytes:
    return b"".join(os.fsencode(name) + b"\0" for name in names)


def _marked(stdout: str) -> tuple[str, str]:
    """The value of the ``ROOT_MARK`` line, and the output after it."""
    _, found, rest = stdout.partition("\n" + ROOT_MARK)
    if not found:
        return "", ""
    value, _, rest = rest.partition("\n")
    return value, rest


def _error_lines(result: CommandResult) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or f"exit status {result.rc}"


def _batches(entries: list[Entry]) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        batch.append(entry)
        size += entry.size
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# -- files of orch's machine ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file to transfer: its path relative to the staged root, and orch's copy of it."""

    rel: str
    local: Path
    size: int = 0
    mode: int = 0o644


def local_path(task: Task, value: Any) -> Path:
    """A path of orch's machine: ``~`` expanded, relative ones under the blueprint's folder."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = Path(task.base_dir or os.getcwd()) / path
    return path


def sha256_file(run: Run, path: Path) -> str:
    """A local file's sha256, read in chunks (cancel is checked between them)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                run.check()
                digest.update(chunk)
    except OSError as exc:
        raise Failed(f"cannot read {path} on orch's machine: {failure_cause(exc)}") from exc
    return digest.hexdigest()


def list_local(run: Run, source: Path, includes: Includes) -> tuple[list[Entry], bool]:
    """The files of a local source (a file, or a folder walked in order, links followed
    once), and whether the source is a single file."""
    try:
        info = source.stat()
    except OSError as exc:
        raise Failed(f"the source {source} cannot be read on orch's machine: "
                     f"{failure_cause(exc)}") from exc
    if not source.is_dir():
        return [Entry(source.name, source, info.st_size, info.st_mode & 0o777)], True
    entries = [entry for entry in _walk(source) if includes(entry.rel)]
    return entries, False


def _walk(root: Path) -> Iterator[Entry]:
    seen: set[tuple[int, int]] = set()

    def failed(exc: OSError) -> NoReturn:
        raise Failed(f"cannot list {exc.filename} on orch's machine: {failure_cause(exc)}")

    for folder, dirs, files in os.walk(root, onerror=failed, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError as exc:
            failed(exc)
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs.sort()
        for name in sorted(files):
            if name.startswith(PART):
                continue
            path = Path(folder) / name
            yield from _entry(root, path)


def _entry(root: Path, path: Path) -> Iterator[Entry]:
    try:
        info = path.stat()
    except OSError as exc:
        raise Failed(f"cannot read {path} on orch's machine: {failure_cause(exc)}") from exc
    if path.is_file():  # sockets and pipes are not data
        yield Entry(path.relative_to(root).as_posix(), path, info.st_size, info.st_mode & 0o777)


# -- stage in ---------------------------------------------------------------------------------


def _file_session(run: Run, transport: Transport) -> contextlib.AbstractContextManager[Any]:
    opener: Callable[..., Any] | None = getattr(transport, "file_session", None)
    if opener is None:
        raise Failed(f"{run.host}: this host's transport cannot stream files")
    return opener(run.context.cancel)


def stage_in(run: Run, transport: Transport) -> dict[str, str]:
    """Upload the source to the destination, skipping files already there."""
    task = run.task
    if not task.properties.get("source"):
        raise Failed("StageIn needs the property source")
    source = local_path(task, task.properties["source"])
    entries, single = list_local(run, source, Includes(task.properties.get("include")))
    destination = node_dir(task, transport, "destination")
    token = part_token(task)
    root, theirs = prepare_upload(run, transport, destination, entries, token)
    tally = Tally(path=posixpath.join(root, entries[0].rel) if single else root)
    pending = [e for e in entries if not _same_up(run, e, theirs.get(e.rel), tally)]
    if not entries:
        run.log(f"warning: no file to stage in {source}", "stderr")
    if pending:
        with _file_session(run, transport) as files:
            for batch in _batches(pending):
                tally.bytes += upload_batch(run, transport, files, root, batch, token)
                tally.files += len(batch)
    _summary(run, "staged in", tally, f"{run.host}:{tally.path}")
    return tally.outputs()


def part_token(task: Task) -> str:
    """The token of this node's temporary files (``.orch-part.<token>.<n>``): the same for
    every run of the operation, so that a run resumed after orch was killed mid-transfer
    removes what the killed one half-sent, and only that."""
    key = f"{task.deployment}\0{task.instance}\0{task.interface}.{task.operation}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def prepare_upload(run: Run, transport: Transport, destination: str, entries: list[Entry],
                   token: str | None = None) -> tuple[str, dict[str, str]]:
    """One command: create the destination and its folders, resolve it (``$VARS``, links),
    remove the temporary files an interrupted run of this operation (``token``) left there,
    and hash the files already there. Returns (absolute root, {rel: sha256})."""
    folders = sorted({posixpath.dirname(e.rel) for e in entries} - {""})
    names = [_dot(f) + "/" for f in folders] + [_dot(e.rel) for e in entries]
    command = "\n".join([
        _SUM_SETUP,
        f"D={quote_path(destination)}",
        'mkdir -p -- "$D" && cd -- "$D" || exit 3',
        *([f"find . -type f -name {shlex.quote(f'{PART}{token}.*')} -exec rm -f -- {{}} +"]
          if token else []),
        f"printf '\\n{ROOT_MARK}%s\\n' \"$PWD\"",
        f"xargs -0 sh -c {shlex.quote(_PREPARE_BATCH)} sh",
        "[ $? -ne 124 ] || exit 4",
    ])
    try:
        result = run.command(transport, command, _nul_list(names))
    except TransportError as exc:
        raise Failed(str(exc), started=exc.started) from exc
    root, rest = _marked(result.stdout)
    if result.rc != 0 or not root.startswith("/"):
        raise Failed(f"cannot create the destination {destination} on {run.host}: "
                     f"{_error_lines(result)}")
    return root, parse_sums(rest)


def _same_up(run: Run, entry: Entry, theirs: str | None, tally: Tally) -> bool:
    if theirs is None or theirs != sha256_file(run, entry.local):
        return False
    tally.skipped += 1
    run.log(f"skipped {entry.rel} (same sha256)")
    return True


def upload_batch(run: Run, transport: Transport, files: FileSession, root: str,
                 batch: list[Entry], token: str) -> int:
    """Send each file to a temporary name, have the site hash them all, then rename them;
    returns the bytes sent."""
    parts = {entry.rel: _part_name(entry.rel, token, i) for i, entry in enumerate(batch)}
    try:
        sent = {e.rel: send(run, files, e, posixpath.join(root, parts[e.rel])) for e in batch}
        command = f"{_SUM_SETUP}\ncd -- {shlex.quote(root)} && xargs -0 $SUM --"
        check = run.command(transport, command, _nul_list(_dot(p) for p in parts.values()))
        theirs = parse_sums(check.stdout)
        for entry in batch:
            _verify(run, entry, root, theirs.get(parts[entry.rel]), sent[entry.rel][0])
        for entry in batch:
            _commit(run, files, entry, root, parts[entry.rel], sent[entry.rel][1])
    except BaseException:
        for part in parts.values():
            with contextlib.suppress(Exception):
                files.remove(posixpath.join(root, part))
        raise
    return sum(size for _, size in sent.values())


def _part_name(rel: str, token: str, index: int) -> str:
    return posixpath.join(posixpath.dirname(rel), f"{PART}{token}.{index}")


def send(run: Run, files: FileSession, entry: Entry, target: str) -> tuple[str, int]:
    """Stream one file to ``target``; returns the sha256 and the size of the bytes sent."""
    final = posixpath.join(posixpath.dirname(target), posixpath.basename(entry.rel))
    digest = hashlib.sha256()
    progress = Progress(run, entry.rel, entry.size)
    try:
        with open(entry.local, "rb") as source:
            out = files.open_write(target, entry.mode)
            try:
                while chunk := source.read(CHUNK):
                    run.check()
                    digest.update(chunk)
                    out.write(chunk)
                    progress.add(len(chunk))
                out.close()
            except BaseException:
                out.discard()
                raise
    except FileTransferError as exc:
        raise Failed(f"cannot upload {entry.local} to {run.host}:{final}: {exc.cause}") from exc
    except OSError as exc:
        raise Failed(f"cannot read {entry.local} on orch's machine: "
                     f"{failure_cause(exc)}") from exc
    return digest.hexdigest(), progress.done


def _verify(run: Run, entry: Entry, root: str, theirs: str | None, sent: str) -> None:
    if theirs != sent:
        found = f"sha256 {theirs}" if theirs else "no sha256 (file missing)"
        raise Failed(f"upload of {entry.local} to {run.host}:{posixpath.join(root, entry.rel)} "
                     f"is corrupt: the site has {found}, orch sent {sent}")


def _commit(run: Run, files: FileSession, entry: Entry, root: str, part: str, size: int
            ) -> None:
    final = posixpath.join(root, entry.rel)
    try:
        files.rename(posixpath.join(root, part), final)
    except FileTransferError as exc:
        raise Failed(f"cannot put {entry.local} in place at {run.host}:{final}: "
                     f"{exc.cause}") from exc
    run.log(f"uploaded {entry.rel} ({human_size(size)})")


class Progress:
    """Reports how far a long file got, every ``PROGRESS_SECONDS`` (its size when known)."""

    def __init__(self, run: Run, rel: str, size: int | None):
        self.run, self.rel, self.size = run, rel, size
        self.done = 0
        self.next = time.monotonic() + PROGRESS_SECONDS

    def add(self, count: int) -> None:
        self.done += count
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + PROGRESS_SECONDS
            total = f" of {human_size(self.size)}" if self.size else ""
            self.run.log(f"{self.rel}: {human_size(self.done)}{total}")


def _summary(run: Run, verb: str, tally: Tally, where: str) -> None:
    elapsed = max(time.monotonic() - run.started, 1e-6)
    rate = f", {human_size(tally.bytes / elapsed)}/s" if tally.bytes else ""
    run.log(f"{verb} {tally.files} file(s), {human_size(tally.bytes)}, at {where}; "
            f"{tally.skipped} skipped (same sha256); {elapsed:.1f} s{rate}")


# -- stage out --------------------------------------------------------------------------------


def remote_source(task: Task, transport: Transport) -> str:
    """StageOut's source on the site: relative paths are under ``<work_dir>/<deployment>``."""
    source = str(task.properties.get("source") or "")
    if not source:
        raise Failed("StageOut needs the property source")
    if source.startswith(("/", "~", "$")):
        return expand_home(source, transport)
    return posixpath.join(work_root(task, transport), safe_segment(task.deployment), source)


def stage_out(run: Run, transport: Transport) -> dict[str, str]:
    """Download the source into the destination, skipping files already there."""
    task = run.task
    if not task.properties.get("destination"):
        raise Failed("StageOut needs the property destination")
    source = remote_source(task, transport)
    includes = Includes(task.properties.get("include"))
    single, root, theirs = list_remote(run, transport, source, includes)
    destination = local_path(task, task.properties["destination"])
    names = sorted(theirs)
    tally = Tally(path=str(destination / names[0]) if single and names else str(destination))
    if not names:
        run.log(f"warning: no file to stage out in {run.host}:{root}", "stderr")
    pending = [n for n in names if not _same_down(run, destination, n, theirs[n], tally)]
    token = part_token(task)
    _remove_parts(destination, token)
    if pending:
        with _file_session(run, transport) as files:
            for index, name in enumerate(pending):
                size = receive(run, files, posixpath.join(root, name), destination / name,
                               theirs[name], f"{token}.{index}")
                tally.files += 1
                tally.bytes += size
                run.log(f"downloaded {name} ({human_size(size)})")
    _summary(run, "staged out", tally, tally.path)
    return tally.outputs()


def list_remote(run: Run, transport: Transport, source: str, includes: Includes
                ) -> tuple[bool, str, dict[str, str]]:
    """One command: whether the source is a file, its folder, and the sha256 of each file."""
    find = f"find -L . {includes.find_filter()} -type f ! -name {shlex.quote(PART + '*')}"
    command = "\n".join([
        _SUM_SETUP,
        f"S={quote_path(source)}",
        'if [ -d "$S" ]; then',
        '  cd -- "$S" || exit 3',
        f"  printf '\\n{ROOT_MARK}dir:%s\\n' \"$PWD\"",
        f"  exec {find} -exec $SUM -- {{}} +",
        "fi",
        'if [ ! -f "$S" ]; then',
        '  ls -d -- "$S" >/dev/null || exit 66',
        '  printf "%s: not a file or folder\\n" "$S" >&2; exit 66',
        "fi",
        'cd -- "$(dirname -- "$S")" || exit 3',
        f"printf '\\n{ROOT_MARK}file:%s\\n' \"$PWD\"",
        'exec $SUM -- "./$(basename -- "$S")"',
    ])
    try:
        result = run.command(transport, command)
    except TransportError as exc:
        raise Failed(str(exc), started=exc.started) from exc
    found, sums = _marked(result.stdout)
    kind, _, root = found.partition(":")
    if result.rc != 0 or kind not in ("dir", "file"):
        raise Failed(f"cannot read the source {source} on {run.host}: {_error_lines(result)}")
    theirs = parse_sums(sums)
    if kind == "dir":
        theirs = {name: digest for name, digest in theirs.items() if includes(name)}
    return kind == "file", root, theirs


def _same_down(run: Run, destination: Path, name: str, theirs: str, tally: Tally) -> bool:
    local = destination / name
    if not local.is_file() or sha256_file(run, local) != theirs:
        return False
    tally.skipped += 1
    run.log(f"skipped {name} (same sha256)")
    return True


def _remove_parts(destination: Path, token: str) -> None:
    """The temporary files an interrupted run of this operation left in ``destination``."""
    if not destination.is_dir():
        return
    for part in destination.rglob(f"{PART}{token}.*"):
        with contextlib.suppress(OSError):
            if part.is_file() and not part.is_symlink():
                part.unlink()


def receive(run: Run, files: FileSession, remote: str, local: Path, expected: str, token: str
            ) -> int:
    """Stream one file into ``local`` through a temporary name; returns its size."""
    try:
        local.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(f"cannot create {exc.filename or local.parent} on orch's machine: "
                     f"{failure_cause(exc)}") from exc
    part = local.parent / f"{PART}{token}"
    try:
        stream = files.open_read(remote)
    except FileTransferError as exc:
        raise Failed(f"cannot download {run.host}:{remote}: {exc.cause}") from exc
    try:
        digest, size = _write_local(run, stream, part, local)
        if digest != expected:
            raise Failed(f"download of {run.host}:{remote} to {local} is corrupt: it hashes "
                         f"to {digest}, the site listed {expected} (changed while copied?)")
        os.replace(part, local)
    except FileTransferError as exc:
        raise Failed(f"cannot download {run.host}:{remote} to {local}: {exc.cause}") from exc
    except OSError as exc:
        raise Failed(f"cannot write {local} on orch's machine: {failure_cause(exc)}") from exc
    finally:
        stream.discard()
        with contextlib.suppress(OSError):
            part.unlink()
    return size


def _write_local(run: Run, stream: Any, part: Path, local: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    progress = Progress(run, str(local), stream.size)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stream.mode & 0o777 or 0o644)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            run.check()
            digest.update(chunk)
            out.write(chunk)
            progress.add(len(chunk))
    return digest.hexdigest(), progress.done


# -- undeploy ---------------------------------------------------------------------------------


def remove_staged(run: Run, transport: Transport) -> dict[str, str]:
    """StageIn's delete: remove what start put on the site (its ``path``), when asked to."""
    path = str(run.task.inputs.get("path") or "")
    if not run.task.properties.get("remove_on_undeploy"):
        if path:
            run.log(f"kept {run.host}:{path} (remove_on_undeploy is false)")
        return {}
    if not path:
        run.log("nothing was staged in: nothing to remove")
        return {}
    command = "\n".join([
        f"P={shlex.quote(path.rstrip('/') or '/')}",
        f'for x in / "$HOME" {quote_path(work_root(run.task, transport))}; do',
        '  case "${x%/}/" in "${P%/}/"*) echo "refusing to remove $P: it holds $x" >&2; exit 5;;',
        "  esac",
        "done",
        'rm -rf -- "$P" || exit 1',
        # the deployment's folder, once its nodes' folders are all gone
        remove_if_empty(deployment_dir(run.task, transport)),
    ])
    result = run.command(transport, command)
    if result.rc != 0:
        raise Failed(f"cannot remove {path} on {run.host}: {_error_lines(result)}")
    run.log(f"removed {run.host}:{path}")
    return {}
