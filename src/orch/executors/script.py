"""Shell and Python scripts, run the Yorc way: in a fresh work dir, with inputs as environment
variables, and the variables a shell script ``export``s coming back as outputs.

One operation is one command on the host: it copies the artifacts from a per-host cache into the
work dir, runs the script, then prints the environment dumps and the ``$ORCH_OUTPUTS`` file
after a random marker on stdout, and removes the work dir on success. Artifacts reach the cache
once per host and content (an SFTP upload only when the command reports them missing), so the
common case costs a single round trip. On this machine the work dir is prepared and removed in
Python instead: cheaper than forking mkdir, cp and rm.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import threading
import time
import weakref
from dataclasses import dataclass

from orch.executors.base import (
    TAIL_LINES,
    Artifact,
    OperationResult,
    RunContext,
    Task,
    as_text,
    escaping_artifact,
)
from orch.transport.base import CommandResult, Transport, TransportError
from orch.transport.local import LocalTransport

MASK = "*****"
CACHE_DIR = ".artifacts"
"""Folder of the work root where artifacts are cached by content hash."""

SHELL_NOISE = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
ARTIFACT_TYPES = frozenset(
    f"{prefix}{kind}"
    for kind in ("bash", "python")
    for prefix in ("", "tosca:", "tosca.artifacts.implementation.", "tosca:implementation.")
)
EXTENSIONS = (".sh", ".bash", ".py")

_MISSING_RC = 97
_SETUP_RC = 98


@dataclass(frozen=True)
class _Staged:
    """An artifact as the host sees it: its name in the work dir and its cache file."""

    artifact: Artifact
    digest: str
    mode: int


def interpreter(artifact: Artifact) -> str:
    """``python3`` for .py, ``bash`` for .bash or a bash shebang, else ``/bin/sh``."""
    name = artifact.name.lower()
    if name.endswith(".py"):
        return "python3"
    try:
        with open(artifact.local_path, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        if b"bash" in first:
            return "bash"
        if b"python" in first:
            return "python3"
    return "bash" if name.endswith(".bash") else "/bin/sh"


def parse_env(dump: str) -> dict[str, str] | None:
    """``env -0`` output as a dict; None when there was no dump at all."""
    if not dump:
        return None
    env: dict[str, str] = {}
    for entry in dump.split("\0"):
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


def exported_outputs(before: dict[str, str] | None, after: dict[str, str] | None) -> dict[str, str]:
    """Variables the script exported: new or changed, without the shell's and orch's own."""
    if before is None or after is None:
        return {}
    return {
        name: value
        for name, value in after.items()
        if name not in SHELL_NOISE and not name.startswith("ORCH_") and before.get(name) != value
    }


def file_outputs(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``$ORCH_OUTPUTS`` (other lines are ignored)."""
    outputs: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        name = name.strip()
        if sep and name:
            outputs[name] = value
    return outputs


class Masker:
    """Replaces every secret value by ``*****`` (longest first, so overlaps mask fully)."""

    def __init__(self, values: tuple[str, ...]):
        self.values = sorted({v for v in values if v}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return text


class _StreamSink:
    """Forwards output lines to the operation log, masked, until orch's marker on stdout."""

    def __init__(self, marker: str, context: RunContext, mask: Masker):
        self.marker = marker
        self.log = context.log
        self.mask = mask
        self.stdout_done = False

    def __call__(self, stream: str, line: str) -> None:
        if stream == "stdout":
            if self.stdout_done:
                return
            index = line.find(self.marker)
            if index >= 0:
                self.stdout_done = True
                line = line[:index]
                if not line:
                    return
        self.log(stream, self.mask(line))


def _tail(text: str, mask: Masker) -> list[str]:
    return [mask(line) for line in text.splitlines()[-TAIL_LINES:]]


def _prepare_locally(workdir: str, artifacts: tuple[Artifact, ...]) -> None:
    for artifact in artifacts:
        target = os.path.join(workdir, artifact.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(artifact.local_path, target)
        os.chmod(target, os.stat(artifact.local_path).st_mode & 0o777 | 0o600)


def command_line(
    task: Task, staged: list[_Staged], workdir: str, cache: str, marker: str, *, in_shell: bool
) -> str:
    """The one shell command that runs an operation and reports after ``marker`` on stdout.

    With ``in_shell`` it also copies the artifacts from the host's cache into the work dir
    (reporting the missing ones instead) and removes the work dir on success.
    """
    q = shlex.quote
    lines = [f"W={q(workdir)}"]
    if in_shell:
        digests = " ".join(q(s.digest) for s in staged)
        dirs = sorted({os.path.dirname(f"{workdir}/{s.artifact.name}") for s in staged})
        copies = " && ".join(
            f'cp "$C"/{q(s.digest)} {q(workdir + "/" + s.artifact.name)}' for s in staged
        )
        lines += [
            f"C={q(cache)}",
            f'm=; for f in {digests}; do [ -f "$C/$f" ] || m="$m $f"; done',
            f'if [ -n "$m" ]; then printf "%s\\n" {q(marker + "missing")}"$m"; '
            f"exit {_MISSING_RC}; fi",
            f'mkdir -p {" ".join(q(d) for d in dirs)} && {copies} && cd "$W" '
            f"|| {{ printf '%s\\n' {q(marker + 'setup')}; exit {_SETUP_RC}; }}",
        ]
    else:
        lines.append(f"cd \"$W\" || {{ printf '%s\\n' {q(marker + 'setup')}; exit {_SETUP_RC}; }}")
    impl = f"{workdir}/{task.implementation.name}"
    interp = interpreter(task.implementation)
    if interp == "python3":
        lines += [f"python3 {q(impl)}", "rc=$?", f"printf %s {q(marker + 'end' + marker + '2')}"]
    else:
        # Sourced, so that its exports are visible to the EXIT trap, which runs even when the
        # script ends with 'exit'; the exit status stays the script's. Both environments go
        # to one file, read with the outputs file by one cat.
        dump = "{{ printf %s {tag}; env -0; }} >> {path}"
        after = dump.format(tag=q(marker + "1"), path=q(workdir + "/.orch_env"))
        wrapper = f"trap {q(after)} EXIT; " + '. "$0"'
        lines += [
            dump.format(tag=q(marker + "0"), path=".orch_env"),
            f"{interp} -c {q(wrapper)} {q(impl)}",
            "rc=$?",
            f"printf %s {q(marker + '2')} >> .orch_env",
            f"printf %s {q(marker + 'end')}",
        ]
    lines.append("cat .orch_env .orch_outputs 2>/dev/null")
    if in_shell:
        lines.append('if [ "$rc" -eq 0 ]; then cd / && rm -rf "$W"; fi')
    lines.append('exit "$rc"')
    return "\n".join(lines)


def _result(
    task: Task,
    result: CommandResult,
    user_out: str,
    tail: str,
    marker: str,
    workdir: str,
    host: str,
    mask: Masker,
) -> OperationResult:
    stdout_tail, stderr_tail = _tail(user_out, mask), _tail(result.stderr, mask)

    def done(status, message="", **kwargs) -> OperationResult:
        return OperationResult(
            status,
            rc=result.rc,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            message=mask(message),
            **kwargs,
        )

    if result.timed_out:
        return done("timeout", f"timed out after {task.timeout:g} s")
    if result.cancelled:
        return done("cancelled", "cancelled")
    if tail.startswith("missing"):
        return done(
            "failed",
            f"artifacts missing from the cache on {host} right after their upload",
            started=False,
        )
    if tail.startswith("setup"):
        reason = stderr_tail[-1] if stderr_tail else "mkdir or cp failed"
        return done(
            "failed", f"cannot prepare the work dir {workdir} on {host}: {reason}", started=False
        )
    if result.rc != 0:
        return done("failed", f"exit status {result.rc} (work dir kept: {workdir})")
    sections = {part[:1]: part[1:] for part in tail[len("end") :].split(marker) if part}
    outputs = exported_outputs(parse_env(sections.get("0", "")), parse_env(sections.get("1", "")))
    outputs.update(file_outputs(sections.get("2", "")))
    return done("ok", outputs={mask(k): mask(v) for k, v in outputs.items()})


class ScriptExecutor:
    """Runs ``.sh``/``.bash``/``.py`` implementations (TOSCA Bash and Python artifacts)."""

    name = "script"
    kinds = ".sh, .bash and .py scripts"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # per transport: digest -> when it was last uploaded (monotonic)
        self._uploaded: weakref.WeakKeyDictionary[Transport, dict[str, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._upload_locks: dict[tuple[int, str], threading.Lock] = {}

    def accepts(self, implementation: str, artifact_type: str | None) -> bool:
        if implementation.lower().endswith(EXTENSIONS):
            return True
        return bool(artifact_type) and artifact_type.lower() in ARTIFACT_TYPES

    # -- running ----------------------------------------------------------------------------

    def run(self, task: Task, context: RunContext) -> OperationResult:
        mask = Masker(task.secret_values)
        if context.cancel.is_set():
            return OperationResult("cancelled", message="cancelled", started=False)
        artifacts = (task.implementation, *task.dependencies)
        escaping = escaping_artifact(task)
        if escaping is not None:
            return OperationResult(
                "failed",
                started=False,
                message=mask(f"artifact name {escaping!r} must be a path inside the work dir"),
            )
        try:
            transport = context.transport(task.host)
            local = isinstance(transport, LocalTransport)
            root = context.work_root
            if not root.startswith("/"):
                root = f"{transport.home().rstrip('/')}/{root}"
            staged = [] if local else [self._stage(a) for a in artifacts]
        except TransportError as exc:
            return OperationResult("failed", message=mask(str(exc)), started=False)
        except OSError as exc:
            return OperationResult(
                "failed",
                started=False,
                message=mask(f"cannot read artifact {exc.filename}: {exc.strerror}"),
            )
        instance = task.instance.replace("/", "_")
        workdir = (
            f"{root}/{task.deployment}/{instance}-{task.interface}-{task.operation}-"
            f"{secrets.token_hex(4)}"
        )
        cache = f"{root}/{CACHE_DIR}"
        if local:
            # on this machine, file copies in Python are far cheaper than mkdir and cp forks
            try:
                _prepare_locally(workdir, artifacts)
            except OSError as exc:
                return OperationResult(
                    "failed",
                    started=False,
                    message=mask(
                        f"cannot prepare the work dir {workdir} on localhost: {exc.strerror or exc}"
                    ),
                )
        marker = f"@orch-{secrets.token_hex(8)}@"
        inputs = {name: as_text(value) for name, value in task.inputs.items()}
        env = {**inputs, **task.environment, "ORCH_OUTPUTS": f"{workdir}/.orch_outputs"}
        command = command_line(task, staged, workdir, cache, marker, in_shell=not local)
        sink = _StreamSink(marker, context, mask)
        for attempt in range(2):
            checked_at = time.monotonic()
            try:
                result = transport.run(
                    command, env=env, timeout=task.timeout, cancel=context.cancel, on_line=sink
                )
            except TransportError as exc:
                return OperationResult("failed", message=mask(str(exc)), started=exc.started)
            user_out, _, tail = result.stdout.partition(marker)
            if tail.startswith("missing") and attempt == 0:
                try:
                    self._upload(
                        transport, cache, staged, tail[len("missing") :].split(), checked_at
                    )
                except TransportError as exc:
                    return OperationResult("failed", message=mask(str(exc)), started=False)
                sink.stdout_done = False
                continue
            outcome = _result(task, result, user_out, tail, marker, workdir, transport.host, mask)
            if local and outcome.ok:
                shutil.rmtree(workdir, ignore_errors=True)
            return outcome
        raise AssertionError("unreachable")

    # -- artifacts --------------------------------------------------------------------------

    @staticmethod
    def _stage(artifact: Artifact) -> _Staged:
        with open(artifact.local_path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        mode = os.stat(artifact.local_path).st_mode & 0o777 | 0o600
        # the mode is part of the key: cp keeps it, and scripts may run their dependencies
        return _Staged(artifact, f"{digest}-{mode:o}", mode)

    def _upload(
        self,
        transport: Transport,
        cache: str,
        staged: list[_Staged],
        missing: list[str],
        checked_at: float,
    ) -> None:
        """Put missing artifacts in the host's cache, atomically (upload beside, then rename)
        so that a concurrent reader never sees half a file. Operations that found the same
        artifact missing at the same time upload it once: whoever comes second sees that it
        was uploaded after its own check."""
        for item in staged:
            if item.digest not in missing:
                continue
            with self._lock:
                lock = self._upload_locks.setdefault((id(transport), item.digest), threading.Lock())
                uploaded = self._uploaded.setdefault(transport, {})
            with lock:
                if uploaded.get(item.digest, float("-inf")) > checked_at:
                    continue
                transport.makedirs(cache)
                temporary = f"{cache}/.{item.digest}.{secrets.token_hex(4)}"
                final = f"{cache}/{item.digest}"
                transport.put(str(item.artifact.local_path), temporary, mode=item.mode)
                moved = transport.run(f"mv -f {shlex.quote(temporary)} {shlex.quote(final)}")
                if moved.rc != 0:
                    raise TransportError(
                        f"{transport.host}: cannot move {temporary} to {final}: "
                        f"{moved.stderr.strip()}",
                        host=transport.host,
                    )
                uploaded[item.digest] = time.monotonic()
