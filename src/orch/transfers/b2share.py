"""The files of a B2SHARE record to a site (DLS ``taskflow_example``, node type
DLSDAGStageInData), through B2SHARE's documented REST API: ``GET {server}/api/records/{oid}``
answers JSON whose ``files`` entries give ``key`` (the file's name), ``size``, ``checksum``
(``md5:<hex>``) and the file's URL (``links.self``; else ``{links.files}/{key}`` of the record,
else ``{server}/api/files/{bucket}/{key}``).

conf: ``oid`` (the record id), ``target`` (the folder receiving the files), ``force``,
``b2share_server`` (else the site's environment ``B2SHARE_SERVER``, else ``DEFAULT_SERVER``),
``b2share_token`` (an access token for restricted records: sent as B2SHARE's ``access_token``
query parameter, never shown). Each file's md5 is verified; a file already on the site with
that md5 is skipped unless ``force``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from orch.executors.staging import Failed, Run
from orch.transfers import httpio
from orch.transfers.http import failure, http_error, opened_source, stops
from orch.transfers.site import (
    Landed,
    SourceFile,
    absolute,
    file_session,
    join,
    land,
    parse_checksum,
    safe_name,
)
from orch.transport.base import Transport

DEFAULT_SERVER = "https://b2share.eudat.eu"
"""EUDAT's public B2SHARE, when neither the conf nor the site names a server."""


def server_of(conf: dict[str, Any], site: Any) -> str:
    environment = getattr(site, "environment", None) or {}
    return str(conf.get("b2share_server") or environment.get("B2SHARE_SERVER")
               or DEFAULT_SERVER).rstrip("/")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _with_token(url: str, token: str | None, server: str | None = None) -> str:
    """``url`` with the access token, only when it is on the B2SHARE server itself."""
    if not token or (server is not None and _origin(url) != _origin(server)):
        return url
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode({"access_token": token})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def record_files(record: dict[str, Any], server: str) -> list[dict[str, Any]]:
    """The record's file entries, each with a ``url``."""
    entries = record.get("files")
    if isinstance(entries, dict):  # a files-bucket listing
        entries = entries.get("contents")
    if entries is None:
        entries = record.get("contents")
    out = []
    for entry in entries or []:
        if not isinstance(entry, dict) or not entry.get("key"):
            continue
        links = entry.get("links") or {}
        url = links.get("self")
        if not url and (record.get("links") or {}).get("files"):
            url = record["links"]["files"].rstrip("/") + "/" + quote(str(entry["key"]))
        if not url and entry.get("bucket"):
            url = f"{server}/api/files/{entry['bucket']}/{quote(str(entry['key']))}"
        if url:
            out.append({**entry, "url": str(url)})
    return out


def b2share_to_site(run: Run, transport: Transport, conf: dict[str, Any], label: str,
                    default_folder: Callable[[], str], site: Any = None) -> dict[str, str]:
    oid = str(conf.get("oid") or "").strip()
    server = server_of(conf, site)
    token = str(conf.get("b2share_token") or "") or None
    record_url = f"{server}/api/records/{quote(oid, safe='')}"
    target = absolute(str(conf.get("target") or "") or default_folder(), transport)
    fail = failure(label, httpio.display_url(record_url), f"{run.host}:{target}")
    if not oid:
        raise Failed(f"{label}: no oid (the B2SHARE record id): set the oid property or input")
    force = bool(conf.get("force", False))
    run.log(f"{label}: B2SHARE record {oid} at {server} -> {run.host}:{target}")
    try:
        body = httpio.read_all(httpio.request(
            "GET", _with_token(record_url, token), **stops(run),
            headers={"Accept": "application/json"}))
    except (httpio.HttpStatusError, httpio.Unreachable, ValueError) as exc:
        raise http_error(exc, fail, run) from exc
    try:
        record = json.loads(body)
    except ValueError as exc:
        raise fail("the answer is not JSON (is this a B2SHARE server?)") from exc
    entries = record_files(record if isinstance(record, dict) else {}, server)
    if not entries:
        raise fail("the record lists no files")
    tally = Landed(path=target)
    with file_session(run, transport) as files:
        for entry in entries:
            name = safe_name(str(entry["key"]))
            if name is None:
                raise fail(f"unsafe file name {entry['key']!r} in the record")
            final = join(target, name)
            shown = httpio.display_url(entry["url"])
            file_fail = failure(label, shown, f"{run.host}:{final}")
            size = entry.get("size")
            checksum = parse_checksum(entry.get("checksum"))
            source = _lazy_source(run, _with_token(entry["url"], token, server), name,
                                  file_fail,
                                  size if isinstance(size, int) else None, checksum)
            land(run, transport, files, source, final, force=force, tally=tally,
                 fail=file_fail)
    outputs = tally.outputs()
    outputs["target_path"] = target
    outputs["b2share_record"] = record_url
    return outputs


def _lazy_source(run: Run, url: str, name: str, fail: Callable[[str], Failed],
                 size: int | None, checksum: tuple[str, str] | None) -> SourceFile:
    """A file whose size and checksum the record states: opened only when not skipped."""

    def open_() -> Any:
        try:
            resp = httpio.request("GET", url, **stops(run))
        except (httpio.HttpStatusError, httpio.Unreachable, ValueError) as exc:
            raise http_error(exc, fail, run) from exc
        return opened_source(resp, name, url, checksum, size).open()

    return SourceFile(name=name, url=httpio.display_url(url), open=open_, size=size,
                      checksum=checksum)
