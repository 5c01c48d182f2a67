"""A file at an HTTP(S) URL to a site (DLS ``plainhttp2ssh``, node type HTTP2SSH).

conf: ``url`` (credentials in it, ``user:password@``, are used for basic auth and never shown),
``target`` (the file's path on the site; a folder, or a path ending with ``/``, receives it
under the URL's last segment), ``force`` (default true, as the DAG's), optionally ``checksum``
(``md5:...`` or ``sha256:...``) to verify and skip by, ``http_user``/``http_password``.
"""

from __future__ import annotations

import email.utils
import posixpath
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from orch.executors.staging import Failed, Run, Stopped
from orch.transfers import httpio
from orch.transfers.site import (
    Landed,
    SourceFile,
    absolute,
    file_session,
    land,
    parse_checksum,
    safe_name,
    target_is_folder,
)
from orch.transport.base import Transport

HOW = "http_user and http_password in the node's extra_conf, or user:password@ in the url"


def stops(run: Run) -> dict[str, Any]:
    """What ends a request early: the operation's cancel and deadline."""
    return {"cancel": run.context.cancel, "deadline": run.deadline}


def failure(label: str, source: str, destination: str) -> Callable[[str], Failed]:
    """``fail(why)``: the failure message every transfer gives, naming the transfer, where the
    data came from (no credentials) and where it was going."""

    def fail(why: str) -> Failed:
        return Failed(f"{label}: {source} -> {destination}: {why}")

    return fail


def http_error(exc: Exception, fail: Callable[[str], Failed], run: Run,
               auth: httpio.Auth | None = None, how: str = "") -> Exception:
    """An HTTP failure as the transfer's failure (a request cut short by cancel or the
    deadline as that). A refusal (401, 403) says which user was refused, or that no
    credentials were sent and ``how`` to give them."""
    if isinstance(exc, httpio.Unreachable) and exc.cause == "cancelled":
        if not run.context.cancel.is_set() and run.deadline is not None \
                and time.monotonic() >= run.deadline:
            return Stopped("timeout", f"timed out after {run.task.timeout:g} s")
        return Stopped("cancelled", "cancelled")
    if isinstance(exc, httpio.HttpStatusError):
        why = f"HTTP {exc.status} {httpio.status_words(exc.status, exc.reason)}"
        if exc.status in (401, 403) and auth is not None:
            why += f" (user {auth.user})"
        elif exc.status in (401, 403) and how:
            why += f" (no credentials were sent: {how})"
        return fail(why)
    if isinstance(exc, httpio.Unreachable):
        return fail(f"source host {exc.where} unreachable ({exc.cause})")
    return fail(str(exc))


def last_modified(headers: Any) -> int | None:
    value = headers.get("Last-Modified") if headers is not None else None
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def content_length(headers: Any) -> int | None:
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def url_name(url: str) -> str:
    name = safe_name(posixpath.basename(unquote(urlsplit(url).path)))
    return name or "download"


def opened_source(resp: httpio.Response, name: str, url: str,
                  checksum: tuple[str, str] | None = None,
                  size: int | None = None) -> SourceFile:
    """A source file whose answer is already open (its headers give size and time)."""
    return SourceFile(
        name=name, url=httpio.display_url(url), open=lambda: resp, release=resp.close,
        size=content_length(resp.headers) if size is None else size, checksum=checksum,
        mtime=last_modified(resp.headers),
    )


def credentials(url: str, conf: dict[str, Any], user_key: str, password_key: str
                ) -> tuple[str, httpio.Auth | None]:
    clean, auth = httpio.split_credentials(url)
    user, password = conf.get(user_key), conf.get(password_key)
    if user not in (None, ""):
        auth = httpio.Auth(str(user), "" if password is None else str(password))
    return clean, auth


def http_to_site(run: Run, transport: Transport, conf: dict[str, Any], label: str,
                 default_folder: Callable[[], str]) -> dict[str, str]:
    raw = str(conf.get("url") or "")
    if not raw:
        raise Failed(f"{label}: no url to transfer (set the url property or input)")
    url, auth = credentials(raw, conf, "http_user", "http_password")
    shown = httpio.display_url(url)
    force = bool(conf.get("force", True))
    target = str(conf.get("target") or "") or default_folder() + "/"
    target = absolute(target, transport)
    checksum = parse_checksum(conf.get("checksum"))
    fail = failure(label, shown, f"{run.host}:{target}")
    run.log(f"{label}: {shown} -> {run.host}:{target}")
    try:
        resp = httpio.request("GET", url, auth=auth, **stops(run))
    except (httpio.HttpStatusError, httpio.Unreachable, ValueError) as exc:
        raise http_error(exc, fail, run, auth, HOW) from exc
    try:
        final = target.rstrip("/") + "/" + url_name(resp.url) \
            if target_is_folder(run, transport, target) else target
        fail = failure(label, shown, f"{run.host}:{final}")
        tally = Landed(path=final)
        with file_session(run, transport) as files:
            land(run, transport, files, opened_source(resp, posixpath.basename(final), url,
                                                      checksum),
                 final, force=force, tally=tally, fail=fail)
    finally:
        resp.close()
    return {**tally.outputs(), "target_path": final}
