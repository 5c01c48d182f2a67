"""A file or folder of one site to another over SSH (DLS ``ssh2ssh``, node type SSH2SSH).

conf: ``source_path`` on the source host (a file, or a folder whose files all go), and
``target_path`` on the target site (a folder receives a file under its name; a folder's files
land under it). The source host is another ``Host`` (the executor resolves ``source_host``).

The bytes stream through orch (SFTP from the source, SFTP to the target, chunk by chunk): the
two sites need no access to each other. The source hashes its files (sha256) in one command;
a file the target already holds with that sum is skipped unless ``force``; each file sent is
checked against it on arrival before it takes its name.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable
from typing import Any

from orch.executors.base import Host
from orch.executors.staging import Failed, Includes, Run, list_remote
from orch.transfers.http import failure
from orch.transfers.site import (
    Landed,
    SourceFile,
    absolute,
    file_session,
    join,
    land,
    target_is_folder,
)
from orch.transport.base import FileSession, FileTransferError, Transport


class _Stream:
    """A source file opened over SFTP, as a transfer reader."""

    def __init__(self, files: FileSession, path: str, fail: Callable[[str], Failed]):
        try:
            self.stream = files.open_read(path)
        except FileTransferError as exc:
            raise fail(f"cannot read it on the source: {exc.cause}") from exc

    def read(self, size: int) -> bytes:
        return self.stream.read(size)

    def close(self) -> None:
        self.stream.discard()


def ssh_to_site(run: Run, source_transport: Transport, target_transport: Transport,
                source_host: Host, conf: dict[str, Any], label: str,
                default_folder: Callable[[], str]) -> dict[str, str]:
    path = str(conf.get("source_path") or "")
    if not path:
        raise Failed(f"{label}: no source_path (the file or folder on the source host)")
    source_desc = source_host.describe()
    path = absolute(path, source_transport)
    target = absolute(str(conf.get("target_path") or conf.get("target") or "")
                      or default_folder() + "/", target_transport)
    force = bool(conf.get("force", False))
    fail = failure(label, f"{source_desc}:{path}", f"{run.host}:{target}")
    source_run = dataclasses.replace(run, task=dataclasses.replace(run.task, host=source_host))
    try:
        single, root, sums = list_remote(source_run, source_transport, path, Includes(None))
    except Failed as exc:
        raise fail(str(exc)) from exc
    finally:
        run.lines = source_run.lines
    run.log(f"{label}: {source_desc}:{path} -> {run.host}:{target} ({len(sums)} file(s))")
    if single:
        name = next(iter(sums))
        final = join(target, posixpath.basename(name)) \
            if target_is_folder(run, target_transport, target) else target
        places = {name: final}
        tally = Landed(path=final)
    else:
        places = {rel: join(target, rel) for rel in sorted(sums)}
        tally = Landed(path=target)
        if not places:
            run.log(f"warning: {source_desc}:{root} holds no file", "stderr")
    with file_session(source_run, source_transport) as source_files, \
            file_session(run, target_transport) as target_files:
        for rel, final in places.items():
            where = posixpath.join(root, rel)
            file_fail = failure(label, f"{source_desc}:{where}", f"{run.host}:{final}")
            source = SourceFile(
                name=rel, url=f"{source_desc}:{where}", checksum=("sha256", sums[rel]),
                open=lambda where=where, file_fail=file_fail: _Stream(source_files, where,
                                                                      file_fail),
            )  # fmt: skip
            land(run, target_transport, target_files, source, final, force=force, tally=tally,
                 fail=file_fail)
    return {**tally.outputs(), "target_path": tally.path, "source": f"{source_desc}:{path}"}
