"""A local TCP port forwarded over SSH to a port of a compute node (``orch connect``): each
connection to the local port becomes a ``direct-tcpip`` channel of one SSH connection to the
site's login node, which opens the compute node's port (as ``ssh -L`` does)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

CHUNK = 64 * 1024


class PortInUse(Exception):
    """The local port is taken."""


def listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    """The local listening socket (``port`` 0: a free one). Loopback only: whoever can reach
    it reaches the application as the site user."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind((host, port))
    except OSError as exc:
        server.close()
        raise PortInUse(f"local port {port} cannot be used ({exc.strerror or exc})") from None
    server.listen(16)
    server.settimeout(0.2)
    return server


def serve(server: socket.socket, transport: Any, target: tuple[str, int],
          stop: threading.Event, on_error: Any = None) -> None:  # fmt: skip
    """Forward every connection to ``server`` to ``target`` through ``transport`` (a paramiko
    Transport) until ``stop``."""
    while not stop.is_set():
        try:
            local, peer = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(
            target=_pipe, args=(local, peer, transport, target, stop, on_error), daemon=True
        ).start()


def _pipe(local: socket.socket, peer: Any, transport: Any, target: tuple[str, int],
          stop: threading.Event, on_error: Any) -> None:  # fmt: skip
    try:
        channel = transport.open_channel("direct-tcpip", target, peer, timeout=10)
    except Exception as exc:  # refused by the site (nothing listens there...)
        local.close()
        if on_error is not None:
            on_error(f"{target[0]}:{target[1]} refused the connection: {exc}")
        return
    try:
        while not stop.is_set():
            ready, _, _ = select.select([local, channel], [], [], 0.5)
            if local in ready:
                data = local.recv(CHUNK)
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(CHUNK)
                if not data:
                    break
                local.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            channel.close()
        local.close()
