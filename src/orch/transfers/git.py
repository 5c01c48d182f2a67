"""A git repository's tree to a site (DLS ``git2ssh``, node type GIT2SSH).

conf: ``gitlab_url`` and ``gitlab_repo`` (the repository is ``gitlab_repo`` when it is a URL,
else ``gitlab_url/gitlab_repo``, else ``gitlab_url``), ``target`` (the folder receiving the
tree), optionally ``git_ref`` (a branch or tag), ``git_user``/``git_password`` (or a token as
the password) for HTTP(S) repositories, ``force``.

orch clones the repository (shallow, ``git`` on orch's machine; credentials reach git through
its environment as an HTTP header, never on a command line) into a temporary folder, then
uploads the tree without ``.git`` with ``orch.executors.staging``'s upload: files the site
already holds with the same sha256 are skipped unless ``force``, the others are sent to
temporary names, hashed by the site and renamed. The commit is an output (``commit``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.executors.staging import (
    Failed,
    Includes,
    Run,
    Stopped,
    list_local,
    prepare_upload,
    sha256_file,
    upload_batch,
)
from orch.transfers import httpio
from orch.transfers.http import credentials, failure
from orch.transfers.site import absolute, file_session
from orch.transport.base import Transport

ALLOWED_PROTOCOLS = "http:https:git:ssh"
"""What a clone may use (not ``file`` nor ``ext``: a repository URL must not run commands or
read orch's machine)."""
BATCH = 256
CLONE_TIMEOUT = 3600.0


def repository(conf: dict[str, Any]) -> str:
    url = str(conf.get("gitlab_url") or conf.get("git_url") or "").strip()
    repo = str(conf.get("gitlab_repo") or conf.get("git_repo") or "").strip()
    if "://" in repo or repo.startswith("git@"):
        return repo
    if url and repo:
        return url.rstrip("/") + "/" + repo.lstrip("/")
    return url or repo


def shown(url: str) -> str:
    return httpio.display_url(url) if "://" in url else url


def clone(run: Run, url: str, auth: httpio.Auth | None, ref: str | None, dest: Path,
          fail: Callable[[str], Failed]) -> str:
    """Clone ``url`` into ``dest``; returns the commit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=ALLOWED_PROTOCOLS,
               GIT_SSH_COMMAND="ssh -o BatchMode=yes", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    if auth is not None:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                   GIT_CONFIG_VALUE_0=f"Authorization: {auth.header()}")
    command = ["git", "clone", "--quiet", "--depth", "1", "--no-tags"]
    if ref:
        command += ["--branch", ref]
    command += ["--", url, str(dest)]
    _git(run, command, env, fail, "git clone")
    head = _git(run, ["git", "-C", str(dest), "rev-parse", "HEAD"], env, fail, "git rev-parse")
    return head.strip()


def _git(run: Run, command: list[str], env: dict[str, str], fail: Callable[[str], Failed],
         what: str) -> str:
    try:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise Failed(f"cannot run git on orch's machine: {exc.strerror or exc}") from exc
    started = time.monotonic()
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                run.check()
                if time.monotonic() - started > CLONE_TIMEOUT:
                    raise fail(f"{what} took more than {CLONE_TIMEOUT:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        lines = [line.strip() for line in err.decode(errors="replace").splitlines()
                 if line.strip()]
        raise fail(f"{what} failed: {'; '.join(lines[-2:]) or f'exit status {proc.returncode}'}")
    return out.decode(errors="replace")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def drop_links(tree: Path) -> int:
    """Remove the clone's symbolic links (the upload follows links: a repository's link to
    ``/etc`` must not send orch's machine's files); returns how many there were."""
    count = 0
    for folder, dirs, names in os.walk(tree):  # links to folders are listed, not entered
        links = [n for n in (*dirs, *names) if (Path(folder) / n).is_symlink()]
        for name in links:
            (Path(folder) / name).unlink()
        count += len(links)
        dirs[:] = [d for d in dirs if d not in links and not (folder == str(tree) and
                                                                d == ".git")]
    return count


def git_to_site(run: Run, transport: Transport, conf: dict[str, Any], label: str,
                default_folder: Callable[[], str]) -> dict[str, str]:
    raw = repository(conf)
    if not raw:
        raise Failed(f"{label}: no repository (set git_url and git_repo)")
    url, auth = credentials(raw, conf, "git_user", "git_password") if "://" in raw \
        else (raw, None)
    target = absolute(str(conf.get("target") or "") or default_folder(), transport)
    fail = failure(label, shown(url), f"{run.host}:{target}")
    force = bool(conf.get("force", False))
    ref = str(conf.get("git_ref") or conf.get("branch") or "") or None
    run.log(f"{label}: {shown(url)}{' at ' + ref if ref else ''} -> {run.host}:{target}")
    with tempfile.TemporaryDirectory(prefix="orch-git-") as tmp:
        tree = Path(tmp) / "tree"
        commit = clone(run, url, auth, ref, tree, fail)
        run.log(f"cloned {shown(url)} at {commit}")
        links = drop_links(tree)
        if links:
            run.log(f"warning: {links} symbolic link(s) of the repository not transferred "
                    "(a link could point at orch's own files)", "stderr")
        entries, _ = list_local(run, tree, Includes(None))
        entries = [e for e in entries if e.rel != ".git" and not e.rel.startswith(".git/")]
        root, theirs = prepare_upload(run, transport, target, entries)
        pending = [e for e in entries
                   if force or theirs.get(e.rel) != sha256_file(run, e.local)]
        skipped = len(entries) - len(pending)
        sent = 0
        if pending:
            with file_session(run, transport) as files:
                token = secrets.token_hex(4)
                for start in range(0, len(pending), BATCH):
                    run.check()
                    sent += upload_batch(run, transport, files, root,
                                         pending[start:start + BATCH], token)
    run.log(f"{label}: {len(pending)} file(s) sent, {skipped} skipped (same sha256)")
    return {"path": root, "target_path": root, "files": str(len(pending)),
            "skipped": str(skipped), "bytes": str(sent), "commit": commit}


__all__ = ["Stopped", "git_to_site", "repository"]
