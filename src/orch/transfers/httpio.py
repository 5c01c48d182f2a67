"""HTTP(S) for the transfers, on the standard library: basic auth sent only to the host it was
given for, redirects followed, a status turned into words (401: authentication refused, 404:
not found), an unreachable server named, and a cancel that interrupts a blocked read within a
fraction of a second (the socket is shut down under it).

URLs in messages never carry credentials (``display_url``); a password is never put in a URL
orch builds, never logged, never on a command line.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urljoin, urlsplit, urlunsplit

READ_TIMEOUT = 60.0
"""Seconds a server may stay silent (connect, or between two reads) before orch gives up."""
MAX_REDIRECTS = 5
STATUS_WORDS = {
    400: "bad request",
    401: "authentication refused",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict (missing parent collection?)",
    412: "precondition failed",
    423: "locked",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    507: "insufficient storage",
}


class HttpStatusError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, reason: str, url: str):
        self.status = status
        self.reason = reason
        self.url = url
        super().__init__(f"HTTP {status} {status_words(status, reason)}")


class Unreachable(Exception):
    """No answer: the name does not resolve, the port refuses, the server stays silent."""

    def __init__(self, where: str, cause: str):
        self.where = where
        self.cause = cause
        super().__init__(f"{where} unreachable ({cause})")


def status_words(status: int, reason: str = "") -> str:
    return STATUS_WORDS.get(status) or (reason.lower() if reason else "error")


def display_url(url: str) -> str:
    """``url`` without user, password, query (tokens) nor fragment: safe for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Auth:
    """Basic-auth credentials for one origin (scheme, host, port)."""

    user: str
    password: str

    def header(self) -> str:
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def split_credentials(url: str) -> tuple[str, Auth | None]:
    """A URL with ``user:password@`` in it: the URL without them, and them."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, Auth(unquote(parts.username), unquote(parts.password or ""))


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class CancelWatch:
    """Shuts a socket down when ``cancel`` is set or the ``deadline`` (``time.monotonic``)
    passes, so that a read blocked on it returns at once; ``close`` ends the watch."""

    def __init__(self, sock: socket.socket | None, cancel: threading.Event | None,
                 deadline: float | None = None):
        self.sock = sock
        self.cancel = cancel or threading.Event()
        self.deadline = deadline
        self.done = threading.Event()
        self.fired = False
        if sock is not None and (cancel is not None or deadline is not None):
            threading.Thread(target=self._watch, daemon=True, name="orch-http-cancel").start()

    def _due(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _watch(self) -> None:
        while not self.done.is_set():
            if self.cancel.wait(0.2) or self._due():
                if not self.done.is_set():
                    self.fired = True
                    with contextlib.suppress(OSError):
                        self.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
                return

    def close(self) -> None:
        self.done.set()


class Response:
    """An open answer: ``read(n)`` streams the body; ``close`` ends it (and its watch)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 url: str, watch: CancelWatch):
        self.conn = conn
        self.resp = resp
        self.url = url
        self.watch = watch
        self.status = resp.status
        self.headers = resp.headers

    @property
    def cancelled(self) -> bool:
        return self.watch.fired

    def read(self, size: int) -> bytes:
        return self.resp.read(size)

    def close(self) -> None:
        self.watch.close()
        with contextlib.suppress(Exception):
            self.resp.close()
        with contextlib.suppress(Exception):
            self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _connection(parts: SplitResult, timeout: float) -> http.client.HTTPConnection:
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                           timeout=timeout, context=ssl.create_default_context())
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http or https)")


def _where(parts: SplitResult) -> str:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def request(method: str, url: str, *, auth: Auth | None = None,
            headers: Mapping[str, str] | None = None, body: Any = None,
            cancel: threading.Event | None = None, deadline: float | None = None,
            timeout: float = READ_TIMEOUT, ok: tuple[int, ...] = (), follow: bool = True
            ) -> Response:
    """Send one request (following redirects for GET/HEAD/PROPFIND); an error status (>= 400,
    unless listed in ``ok``) raises HttpStatusError, no connection raises Unreachable.
    ``body`` is bytes, or an iterator of bytes chunks sent as they come (with
    ``Content-Length`` in ``headers``)."""
    origin = _origin(urlsplit(url))
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        stop = Stop(cancel, deadline)
        if stop():
            raise Unreachable(_where(parts), "cancelled")
        conn = _connection(parts, timeout)
        conn._create_connection = _connector(stop)  # type: ignore[attr-defined]
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise Unreachable(_where(parts), "cancelled" if stop() else _cause(exc)) from exc
        watch = CancelWatch(conn.sock, cancel, deadline)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            sent = {k.lower() for k in (headers or {})}
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if auth is not None and _origin(parts) == origin:
                conn.putheader("Authorization", auth.header())
            if isinstance(body, (bytes, bytearray)):
                if "content-length" not in sent:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(bytes(body))
            elif body is None:
                if method in ("PUT", "POST", "MKCOL") and "content-length" not in sent:
                    conn.putheader("Content-Length", "0")
                conn.endheaders()
            else:
                conn.endheaders()
                for chunk in body:
                    conn.send(chunk)
            resp = conn.getresponse()
        except BaseException as exc:
            watch.close()
            conn.close()
            if watch.fired:
                raise Unreachable(_where(parts), "cancelled") from exc
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise Unreachable(_where(parts), _cause(exc)) from exc
            raise
        answer = Response(conn, resp, url, watch)
        if follow and resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location") \
                and method in ("GET", "HEAD", "PROPFIND"):
            answer.close()
            url = urljoin(url, resp.headers["Location"])
            continue
        if resp.status >= 400 and resp.status not in ok:
            answer.close()
            raise HttpStatusError(resp.status, resp.reason, url)
        return answer
    raise Unreachable(_where(urlsplit(url)), f"more than {MAX_REDIRECTS} redirects")


CONNECT_TIMEOUT = 20.0
"""Seconds to wait for a TCP connection (cancel and the deadline are checked meanwhile)."""


class Stop:
    """Whether to give up now: cancelled, or past the deadline."""

    def __init__(self, cancel: threading.Event | None, deadline: float | None):
        self.cancel, self.deadline = cancel, deadline

    def __call__(self) -> bool:
        return bool((self.cancel is not None and self.cancel.is_set())
                    or (self.deadline is not None and time.monotonic() >= self.deadline))


def _connector(stop: Stop) -> Any:
    """``socket.create_connection`` that gives up on ``stop`` within a fraction of a second
    (http.client calls it through ``_create_connection``)."""

    def create(address: tuple[str, int], timeout: Any = None, source_address: Any = None
               ) -> socket.socket:
        host, port = address
        last: OSError = OSError("no address")
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, 0,
                                                                socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            began = time.monotonic()
            try:
                code = sock.connect_ex(addr)
                while code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                    _, ready, _ = select.select([], [sock], [], 0.2)
                    if ready:
                        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        break
                    if stop():
                        raise OSError(errno.ECANCELED, "cancelled")
                    if time.monotonic() - began > CONNECT_TIMEOUT:
                        raise TimeoutError(errno.ETIMEDOUT, "no answer in time")
                if code:
                    raise OSError(code, os.strerror(code))
                sock.setblocking(True)
                sock.settimeout(timeout)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
                if stop():
                    break
        raise last

    return create


def _cause(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def read_all(resp: Response, limit: int = 16 * 1024 * 1024) -> bytes:
    """A small body (JSON, XML listing) whole, refusing more than ``limit`` bytes."""
    out = bytearray()
    with resp:
        while chunk := resp.read(65536):
            out += chunk
            if len(out) > limit:
                raise ValueError(f"answer larger than {limit} bytes")
    return bytes(out)


def chunks(reader: Any, size: int) -> Iterator[bytes]:
    while chunk := reader.read(size):
        yield chunk


__all__ = ["Auth", "CancelWatch", "HttpStatusError", "Response", "Unreachable", "display_url",
           "read_all", "request", "split_credentials", "status_words"]
