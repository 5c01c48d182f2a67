"""Running the builders: ``apptainer build``, or ``podman build`` then ``podman save`` to an
OCI archive (then ``apptainer build`` from that archive for a SIF). The same command runs on
orch's machine or on a site's login node, in the build folder, its output streamed line by
line to the operation's log.

podman reads its settings from the environment orch runs in (``CONTAINERS_CONF``,
``CONTAINERS_STORAGE_CONF``, ``~/.config/containers``): orch passes them through unchanged.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import threading
import time
from dataclasses import dataclass, field

from orch.images.context import DEFINITION, DOCKERFILE
from orch.images.spec import ImageSpec
from orch.remote import TAIL_LINES, LogSink, OperationStatus
from orch.transport.base import OPERATION_ENV, Transport, TransportError

PID_FILE = ".orch-build.pid"
KILL_TREE = (
    # stop each process before listing its children (no new ones escape), then kill it
    't() { kill -STOP "$1" 2>/dev/null; for c in $(ps -o pid= --ppid "$1"); do t "$c"; done; '
    'kill -KILL "$1" 2>/dev/null; }; '
    f'P=$(cat {PID_FILE} 2>/dev/null) || exit 0; '
    'for c in $(ps -o pid= --ppid "$P"); do t "$c"; done'
)
MISSING_RC = 127
MISSING = "orch: builder not found:"
INSTALL_HINTS = {
    "apptainer": "install Apptainer (the 'apptainer' package of most distributions; "
    "see https://apptainer.org/docs/admin/main/installation.html)",
    "podman": "install podman (apt-get install podman, dnf install podman; see "
    "https://podman.io/docs/installation)",
}


@dataclass
class BuildResult:
    ok: bool
    status: OperationStatus = "ok"
    rc: int | None = 0
    message: str = ""
    tail: list[str] = field(default_factory=list)


def builders_needed(spec: ImageSpec) -> list[str]:
    """The commands a build runs (podman then apptainer for a SIF from a Dockerfile)."""
    if spec.builder == "apptainer":
        return ["apptainer"]
    return ["podman", "apptainer"] if spec.format == "sif" else ["podman"]


def tag(spec: ImageSpec, digest: str) -> str:
    """podman's name for the image (kept in its storage, e.g. for ``podman run``)."""
    return f"localhost/orch/{spec.name}:{digest[:12]}"


def build_command(spec: ImageSpec, digest: str, output: str, *, force: bool) -> str:
    """The shell command that builds the image into ``output`` from the current folder."""
    q = shlex.quote
    check = " ".join(
        f"command -v {b} >/dev/null 2>&1 || {{ echo {q(MISSING)} {b}; exit {MISSING_RC}; }};"
        for b in builders_needed(spec)
    )
    if spec.builder == "apptainer":
        steps = [f"apptainer build --force {q(output)} {DEFINITION}"]
    else:
        name = tag(spec, digest)
        archive = output if spec.format == "oci-archive" else f"{output}.oci.tar"
        no_cache = " --no-cache" if force else ""
        steps = [
            f"podman build{no_cache} -f {DOCKERFILE} -t {q(name)} .",
            f"rm -f {q(archive)}",
            f"podman save --format oci-archive -o {q(archive)} {q(name)}",
        ]
        if spec.format == "sif":
            steps += [f"apptainer build --force {q(output)} oci-archive:{q(archive)}",
                      f"rm -f {q(archive)}"]  # fmt: skip
    return f"echo $$ > {PID_FILE}; {{ {check} {' && '.join(steps)}; }} 2>&1"


class _Guard:
    """Ends a build on cancel or timeout, whole: builders start their build containers outside
    their own process group (podman's survive the group being killed), so every process
    below the build's shell is killed first, then the command itself is cancelled."""

    def __init__(self, transport: Transport, cwd: str, cancel: threading.Event,
                 timeout: float | None):
        self.transport, self.cwd, self.cancel, self.timeout = transport, cwd, cancel, timeout
        self.stop = threading.Event()
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._done.is_set():
            if self.cancel.wait(0.1):
                self.reason = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                self.reason = "timeout"
            else:
                continue
            with contextlib.suppress(TransportError):
                self.transport.run(KILL_TREE, cwd=self.cwd, timeout=30)
            self.stop.set()
            return

    def __enter__(self) -> _Guard:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()


def run_build(
    transport: Transport,
    command: str,
    cwd: str,
    log: LogSink,
    cancel: threading.Event,
    timeout: float | None,
    where: str,
    operation: str | None = None,
) -> BuildResult:
    """Run a build command (its processes carrying the operation's token); a failure says
    the builder's exit status and its last lines."""
    env = {OPERATION_ENV: operation} if operation else None
    with _Guard(transport, cwd, cancel, timeout) as guard:
        result = transport.run(command, env=env, cwd=cwd, cancel=guard.stop, on_line=log)
    tail = result.stdout.splitlines()[-TAIL_LINES:]
    if guard.reason == "cancelled":
        return BuildResult(False, "cancelled", None, "cancelled: the build was stopped", tail)
    if guard.reason == "timeout":
        return BuildResult(False, "timeout", None, f"the build timed out after {timeout:g} s",
                           tail)  # fmt: skip
    if result.rc == 0:
        return BuildResult(True, tail=tail)
    missing = re.search(re.escape(MISSING) + r" (\S+)", result.stdout)
    if result.rc == MISSING_RC and missing:
        builder = missing.group(1)
        message = f"{builder} not found on {where} (not on PATH): {INSTALL_HINTS[builder]}"
        return BuildResult(False, "failed", result.rc, message, tail)
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    message = f"image build failed on {where} (exit status {result.rc})"
    return BuildResult(False, "failed", result.rc, f"{message}: {last}" if last else message,
                       tail)  # fmt: skip


def temporary_name(final: str) -> str:
    """Where a build writes before its result is renamed into place (same folder)."""
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}.{secrets.token_hex(4)}.part"
