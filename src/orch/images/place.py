"""Images on a site: whether one is there already (size and sha256, one command), uploading
one beside its final name then checking its sha256 there before renaming it into place, and
removing one."""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass

from orch.transport.base import Transport, TransportError

SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Found:
    size: int
    sha256: str | None
    """None when the size already differed (not worth hashing)."""


def probe(transport: Transport, path: str, size: int | None = None) -> Found | None:
    """The file at ``path`` on the host: its size, and its sha256 when the size is ``size``
    (or always, without one); None when there is no such file."""
    q = shlex.quote
    same = f'[ "$s" = {size} ] || exit 0; ' if size is not None else ""
    command = (f"f={q(path)}; [ -f \"$f\" ] || exit 3; s=$(wc -c < \"$f\") || exit 4; "
               f'echo "size $s"; {same}sha256sum "$f"')  # fmt: skip
    result = transport.run(command)
    if result.rc == 3:
        return None
    if result.rc != 0:
        raise TransportError(f"{transport.host}: cannot read {path}: {result.stderr.strip()}",
                             host=transport.host)  # fmt: skip
    lines = result.stdout.split("\n")
    found_size = int(lines[0].split()[1])
    sha = lines[1].split()[0] if len(lines) > 1 and lines[1].strip() else None
    return Found(found_size, sha if sha and SHA256.match(sha) else None)


def upload(transport: Transport, local: str, remote: str, sha256: str) -> None:
    """Put a file at ``remote`` whole or not at all: upload beside it, check its sha256 on
    the host, then rename (a reader never sees half an image)."""
    q = shlex.quote
    folder = remote.rpartition("/")[0]
    transport.makedirs(folder)
    partial = f"{folder}/.{remote.rpartition('/')[2]}.{secrets.token_hex(4)}.part"
    transport.put(local, partial, mode=0o644)
    check = (f"t={q(partial)}; set -- $(sha256sum \"$t\"); "
             f"if [ \"$1\" = {sha256} ]; then mv -f \"$t\" {q(remote)}; "
             f"else echo \"sha256 $1\"; rm -f \"$t\"; exit 5; fi")  # fmt: skip
    result = transport.run(check)
    if result.rc != 0:
        got = result.stdout.strip() or result.stderr.strip()
        raise TransportError(f"{transport.host}: {remote} arrived damaged ({got}, expected "
                             f"sha256 {sha256})", host=transport.host)  # fmt: skip


def remove(transport: Transport, path: str) -> bool:
    """Remove a file from the host; whether it was there."""
    result = transport.run(f"f={shlex.quote(path)}; [ -f \"$f\" ] || exit 3; rm -f \"$f\"")
    if result.rc not in (0, 3):
        raise TransportError(f"{transport.host}: cannot remove {path}: {result.stderr.strip()}",
                             host=transport.host)  # fmt: skip
    return result.rc == 0
