"""WebDAV to a site (DLS ``webdav_stagein``, node type DLSDAGWebdavStageInData) and a site to
WebDAV (DLS ``webdav_stageout``, DLSDAGWebdavStageOutData).

Where on WebDAV: the conf's ``oid`` when it is an http(s) URL, else ``webdav_url`` (conf, else
the site's environment ``WEBDAV_URL``) with ``oid`` as a path under it. Credentials: conf
``webdav_user`` and ``webdav_password`` (or ``user:password@`` in the URL), sent as basic auth
to that server only, never shown.

Stage-in: a file, or a collection walked with ``PROPFIND`` (depth 1, collection by
collection), lands under ``target`` (a file into a folder keeps its name). WebDAV states no
checksum: a file already on the site with the same size and modification time is skipped
unless ``force`` (orch sets the time it compares).

Stage-out: the site's ``path`` (a file, or a folder's files) goes under the WebDAV location
(collections made with ``MKCOL``). Each file is streamed from the site with ``PUT`` to
``<name>.part``, read back and hashed, then ``MOVE``d over its name only when the sums agree; a
file already there with the same sha256 is skipped unless ``force``.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from orch.executors.staging import CHUNK, Failed, Includes, Run, human_size, list_remote
from orch.transfers import httpio
from orch.transfers.http import credentials, failure, http_error, stops
from orch.transfers.site import (
    PART_SUFFIX,
    Landed,
    SourceFile,
    absolute,
    file_session,
    join,
    land,
    safe_name,
    target_is_folder,
)
from orch.transport.base import FileSession, FileTransferError, Transport

DAV = "{DAV:}"
PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop>'
                 b"<resourcetype/><getcontentlength/><getlastmodified/></prop></propfind>")
MAX_ENTRIES = 100_000
HTTP_ERRORS = (httpio.HttpStatusError, httpio.Unreachable, ValueError)
HOW = ("webdav_user and webdav_password in the node's extra_conf, or user:password@ in "
       "webdav_url")


@dataclass
class Entry:
    url: str
    collection: bool
    size: int | None
    mtime: int | None


def location(conf: dict[str, Any], site: Any) -> tuple[str, httpio.Auth | None]:
    """The WebDAV URL the conf names, and its credentials."""
    oid = str(conf.get("oid") or "").strip()
    if oid.startswith(("http://", "https://")):
        raw = oid
    else:
        environment = getattr(site, "environment", None) or {}
        base = str(conf.get("webdav_url") or environment.get("WEBDAV_URL") or "")
        if not base:
            raise Failed("WebDAV: no WebDAV location: give oid as an http(s) URL, or "
                         "webdav_url in extra_conf (or WEBDAV_URL in the site's environment)")
        raw = base.rstrip("/") + "/" + quote(oid.lstrip("/")) if oid else base
    for user_key in ("webdav_user", "webdav_login", "webdav_username"):
        if conf.get(user_key):
            break
    password_key = "webdav_password" if "webdav_password" in conf else "webdav_pass"
    return credentials(raw, conf, user_key, password_key)


def propfind(run: Run, url: str, auth: httpio.Auth | None, depth: str) -> list[Entry]:
    resp = httpio.request("PROPFIND", url, auth=auth, **stops(run),
                          headers={"Depth": depth, "Content-Type": "application/xml"},
                          body=PROPFIND_BODY)
    try:
        root = ET.fromstring(httpio.read_all(resp))
    except ET.ParseError as exc:
        raise ValueError(f"the PROPFIND answer is not XML ({exc}): is this a WebDAV server?"
                         ) from exc
    entries = []
    for response in root.iter(DAV + "response"):
        href = response.findtext(DAV + "href") or ""
        collection = size = mtime = None
        for propstat in response.iter(DAV + "propstat"):
            if "200" not in (propstat.findtext(DAV + "status") or "200"):
                continue
            prop = propstat.find(DAV + "prop")
            if prop is None:
                continue
            kind = prop.find(DAV + "resourcetype")
            if kind is not None:
                collection = kind.find(DAV + "collection") is not None
            length = prop.findtext(DAV + "getcontentlength")
            if length and length.strip().isdigit():
                size = int(length.strip())
            modified = prop.findtext(DAV + "getlastmodified")
            if modified:
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    mtime = int(email.utils.parsedate_to_datetime(modified).timestamp())
        entries.append(Entry(urljoin(url, href), bool(collection), size, mtime))
    return entries


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _same_resource(a: str, b: str) -> bool:
    return unquote(urlsplit(a).path).rstrip("/") == unquote(urlsplit(b).path).rstrip("/")


def walk(run: Run, url: str, auth: httpio.Auth | None) -> tuple[Entry, list[tuple[str, Entry]]]:
    """The resource at ``url``, and when it is a collection its files (relative name, entry)
    found collection by collection."""
    top = propfind(run, url, auth, "0")
    if not top:
        raise ValueError("the PROPFIND answer lists nothing")
    head = top[0]
    if not head.collection:
        return head, []
    found: list[tuple[str, Entry]] = []
    todo = [(url.rstrip("/") + "/", "")]
    while todo:
        folder, prefix = todo.pop()
        for entry in propfind(run, folder, auth, "1"):
            if _same_resource(entry.url, folder):
                continue
            if _origin(entry.url) != _origin(url):
                raise ValueError(f"the listing of {httpio.display_url(folder)} points to "
                                 f"another server ({httpio.display_url(entry.url)})")
            name = unquote(posixpath.basename(urlsplit(entry.url).path.rstrip("/")))
            rel = safe_name(prefix + name)
            if rel is None:
                raise ValueError(f"unsafe name {name!r} in a listing")
            if entry.collection:
                todo.append((entry.url.rstrip("/") + "/", rel + "/"))
            else:
                found.append((rel, entry))
            if len(found) > MAX_ENTRIES:
                raise ValueError(f"more than {MAX_ENTRIES} files")
    return head, sorted(found, key=lambda item: item[0])


def _source(run: Run, entry: Entry, name: str, auth: httpio.Auth | None,
            fail: Callable[[str], Failed]) -> SourceFile:
    def open_() -> Any:
        try:
            return httpio.request("GET", entry.url, auth=auth, **stops(run))
        except HTTP_ERRORS as exc:
            raise http_error(exc, fail, run, auth, HOW) from exc

    return SourceFile(name=name, url=httpio.display_url(entry.url), open=open_,
                      size=entry.size, mtime=entry.mtime)


def webdav_to_site(run: Run, transport: Transport, conf: dict[str, Any], label: str,
                   default_folder: Callable[[], str], site: Any = None) -> dict[str, str]:
    url, auth = location(conf, site)
    shown = httpio.display_url(url)
    target = absolute(str(conf.get("target") or "") or default_folder() + "/", transport)
    fail = failure(label, shown, f"{run.host}:{target}")
    force = bool(conf.get("force", False))
    run.log(f"{label}: {shown} -> {run.host}:{target}")
    try:
        head, tree = walk(run, url, auth)
    except HTTP_ERRORS as exc:
        raise http_error(exc, fail, run, auth, HOW) from exc
    with file_session(run, transport) as files:
        if not head.collection:
            name = safe_name(unquote(posixpath.basename(urlsplit(url).path))) or "download"
            final = join(target, name) if target_is_folder(run, transport, target) \
                else target
            tally = Landed(path=final)
            file_fail = failure(label, shown, f"{run.host}:{final}")
            land(run, transport, files, _source(run, head, name, auth, file_fail), final,
                 force=force, tally=tally, fail=file_fail)
            return {**tally.outputs(), "target_path": final}
        tally = Landed(path=target)
        if not tree:
            run.log(f"warning: {shown} holds no file", "stderr")
        for rel, entry in tree:
            final = join(target, rel)
            file_fail = failure(label, httpio.display_url(entry.url), f"{run.host}:{final}")
            land(run, transport, files, _source(run, entry, rel, auth, file_fail), final,
                 force=force, tally=tally, fail=file_fail)
    return {**tally.outputs(), "target_path": target}


# -- site to WebDAV -------------------------------------------------------------------------------


def _child(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + quote(rel)


def _mkcols(run: Run, base: str, rels: list[str], auth: httpio.Auth | None) -> None:
    """Create the base collection and the folders of ``rels`` (existing ones are fine)."""
    parts = urlsplit(base)
    segments = [s for s in parts.path.split("/") if s]
    wanted: list[str] = []
    for i in range(1, len(segments) + 1):
        wanted.append(f"{parts.scheme}://{parts.netloc}/" + "/".join(segments[:i]) + "/")
    folders = sorted({posixpath.dirname(r) for r in rels} - {""})
    for folder in folders:
        pieces = folder.split("/")
        for i in range(1, len(pieces) + 1):
            wanted.append(_child(base, "/".join(pieces[:i])) + "/")
    seen: set[str] = set()
    for url in wanted:
        if url in seen:
            continue
        seen.add(url)
        with httpio.request("MKCOL", url, auth=auth, **stops(run),
                            ok=(405, 409, 301, 302), follow=False):
            pass  # 405: it exists


def _remote_sha256(run: Run, url: str, auth: httpio.Auth | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with httpio.request("GET", url, auth=auth, **stops(run)) as resp:
        while chunk := resp.read(CHUNK):
            run.check()
            digest.update(chunk)
            size += len(chunk)
    run.check()
    return digest.hexdigest(), size


def _exists(run: Run, url: str, auth: httpio.Auth | None) -> Entry | None:
    try:
        found = propfind(run, url, auth, "0")
    except httpio.HttpStatusError as exc:
        if exc.status == 404:
            return None
        raise
    return found[0] if found else None


def site_to_webdav(run: Run, transport: Transport, conf: dict[str, Any], label: str,
                   default_folder: Callable[[], str], site: Any = None) -> dict[str, str]:
    base, auth = location(conf, site)
    shown_base = httpio.display_url(base)
    source = str(conf.get("path") or conf.get("source") or "")
    if not source:
        raise Failed(f"{label}: no source_path (the file or folder on the site to upload)")
    source = absolute(source, transport)
    force = bool(conf.get("force", False))
    fail = failure(label, f"{run.host}:{source}", shown_base)
    single, root, sums = list_remote(run, transport, source, Includes(None))
    rels = sorted(sums)
    run.log(f"{label}: {run.host}:{source} -> {shown_base} ({len(rels)} file(s))")
    tally = Landed(path=base)
    try:
        _mkcols(run, base, rels, auth)
    except HTTP_ERRORS as exc:
        raise http_error(exc, fail, run, auth, HOW) from exc
    with file_session(run, transport) as files:
        for rel in rels:
            url = _child(base, rel)
            file_fail = failure(label, f"{run.host}:{posixpath.join(root, rel)}",
                                httpio.display_url(url))
            try:
                _upload(run, files, posixpath.join(root, rel), url, sums[rel], auth, force,
                        tally, file_fail)
            except HTTP_ERRORS as exc:
                raise http_error(exc, file_fail, run, auth, HOW) from exc
    outputs = tally.outputs()
    outputs["execution_url"] = _child(shown_base, rels[0]) if single and rels else shown_base
    outputs["path"] = outputs["execution_url"]
    return outputs


def _upload(run: Run, files: FileSession, path: str, url: str, sha256: str,
            auth: httpio.Auth | None, force: bool, tally: Landed,
            fail: Callable[[str], Failed]) -> None:
    if not force:
        there = _exists(run, url, auth)
        if there is not None and not there.collection and _remote_sha256(run, url, auth)[0] \
                == sha256:
            tally.skipped += 1
            run.log(f"skipped {path}: {httpio.display_url(url)} is already there (same sha256)")
            return
    part = url + quote(PART_SUFFIX)
    try:
        stream = files.open_read(path)
    except FileTransferError as exc:
        raise fail(f"cannot read it: {exc.cause}") from exc
    sent = hashlib.sha256()
    count = 0

    def body() -> Iterator[bytes]:
        nonlocal count
        while True:
            run.check()
            chunk = stream.read(CHUNK)
            if not chunk:
                return
            sent.update(chunk)
            count += len(chunk)
            yield chunk

    try:
        try:
            with httpio.request("PUT", part, auth=auth, **stops(run), body=body(),
                                headers={"Content-Length": str(stream.size),
                                         "Content-Type": "application/octet-stream"}):
                pass
        finally:
            stream.discard()
        if sent.hexdigest() != sha256:
            raise fail(f"the file changed while it was sent (sha256 {sent.hexdigest()}, "
                       f"listed {sha256})")
        theirs, size = _remote_sha256(run, part, auth)
        if theirs != sha256:
            raise fail(f"corrupt on the WebDAV server: it holds {size} bytes hashing to "
                       f"sha256 {theirs}, orch sent {sha256}")
        with httpio.request("MOVE", part, auth=auth, **stops(run), follow=False,
                            headers={"Destination": url, "Overwrite": "T"}):
            pass
    except FileTransferError as exc:
        _delete(part, auth)
        raise fail(f"cannot read it: {exc.cause}") from exc
    except BaseException:
        _delete(part, auth)
        raise
    tally.files += 1
    tally.bytes += count
    run.log(f"uploaded {path} ({human_size(count)}) to {httpio.display_url(url)}")


def _delete(url: str, auth: httpio.Auth | None) -> None:
    with contextlib.suppress(Exception), httpio.request("DELETE", url, auth=auth, timeout=10,
                                                         ok=(404,)):
        pass
