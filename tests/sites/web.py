"""Plain HTTP sources for the tests, from Python's ``http.server`` in a thread, and a stand-in
B2SHARE server on it: a B2SHARE server cannot be installed here, so ``b2share_record`` serves
what B2SHARE's documented REST API answers (``GET /api/records/<id>`` with ``files`` entries:
``key``, ``size``, ``checksum`` ``md5:...``, ``links.self``). ``serve_webdav`` starts a real
WebDAV server (WsgiDAV on cheroot, basic auth) over a folder."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Files:
    """What the HTTP stand-in serves: path -> (bytes, headers); '/slow/*' trickles unless
    it is a route."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.hits: dict[str, int] = {}
        self.slow_sent = threading.Event()
        self.tokens: list[str] = []


def _handler(files: Files) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            files.hits[path] = files.hits.get(path, 0) + 1
            if "access_token=" in query:
                files.tokens.append(query)
            if path.startswith("/slow/") and path not in files.routes:
                self._slow()
                return
            if path not in files.routes:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, headers = files.routes[path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _slow(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(64 * 1024 * 1024))
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(4000):
                    self.wfile.write(b"x" * 65536)
                    self.wfile.flush()
                    files.slow_sent.set()
                    time.sleep(0.05)

    return Handler


@contextlib.contextmanager
def serve_files(port: int = 0) -> Iterator[tuple[str, Files]]:
    """A server of ``Files`` on a loopback port (``port``, else a free one): (its base URL,
    the files)."""
    files = Files()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(files))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def b2share_record(files: Files, base: str, record: str, payloads: dict[str, bytes],
                   wrong_md5: bool = False) -> None:
    entries = []
    for key, body in payloads.items():
        path = f"/api/files/bucket-{record}/{key}"
        files.routes[path] = (body, {})
        md5 = hashlib.md5(body if not wrong_md5 else body + b"!").hexdigest()
        entries.append({"key": key, "size": len(body), "checksum": f"md5:{md5}",
                        "bucket": f"bucket-{record}", "links": {"self": base + path}})
    doc = {"id": record, "files": entries, "links": {"self": f"{base}/api/records/{record}"}}
    files.routes[f"/api/records/{record}"] = (json.dumps(doc).encode(),
                                              {"Content-Type": "application/json"})


def free_port() -> int:
    """A loopback port nothing listens on (closed: connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_webdav(user: str, password: str) -> Iterator[tuple[str, Path]]:
    """WsgiDAV with basic auth (``user``, ``password``) over a new temporary folder, on
    cheroot in a thread: (its base URL, the folder). Skips the test without WsgiDAV."""
    import pytest

    cheroot_wsgi = pytest.importorskip("cheroot.wsgi")
    wsgidav_app = pytest.importorskip("wsgidav.wsgidav_app")
    root = Path(tempfile.mkdtemp(prefix="orch-dav-"))
    port = free_port()
    app = wsgidav_app.WsgiDAVApp({
        "host": "127.0.0.1", "port": port,
        "provider_mapping": {"/": str(root)},
        "http_authenticator": {"domain_controller": None, "accept_basic": True,
                               "accept_digest": False, "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "verbose": 0, "logging": {"enable_loggers": []}, "lock_storage": True,
    })  # fmt: skip
    server = cheroot_wsgi.Server(("127.0.0.1", port), app, numthreads=4)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        server.stop()
        thread.join(5)
        shutil.rmtree(root, ignore_errors=True)
