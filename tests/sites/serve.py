"""A real ``orch serve`` process for the tests: started on a free loopback port in a folder
(its state, sites.yaml, data home), killed and started again at will, with the orch CLI in
the same environment and httpx clients holding a user's token."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ORCH = [sys.executable, "-m", "orch"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.tokens: dict[str, str] = {}

    def orch(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*ORCH, *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=180)  # fmt: skip
        assert done.returncode == check, done.stderr
        return done

    def start(self) -> str:
        """Start the server; its URL once it answers."""
        import httpx

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*ORCH, "serve", "--listen", f"127.0.0.1:{port}"],
            env=self.env, cwd=self.root, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/workflows", timeout=1)
                return self.url
            except httpx.TransportError:
                assert self.proc.poll() is None, self.proc.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.1)
        raise AssertionError("orch serve did not start")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop the server if it runs (its executions go on: they are not its children's)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def client(self, token: str | None) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def add_users(self, *names: str) -> None:
        """Add the users and a token for each (``self.tokens``)."""
        for name in names:
            self.orch("users", "add", name)
            self.tokens[name] = self.orch("tokens", "create", name).stdout.strip()


ENDED = {"SUCCESS", "FAILED", "CANCELLED"}


def trigger(client: Any, workflow: str, inputs: dict[str, Any]) -> str:
    """POST an execution of ``workflow``: its location, once the server said 201."""
    response = client.post(f"/workflows/{workflow}", json={"inputs": inputs})
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith("/executions/")
    return location


def wait_for(client: Any, location: str, until: set[str] = ENDED, seconds: float = 60) -> dict:
    """The execution's state once its status is one of ``until`` (or ``seconds`` passed)."""
    deadline = time.monotonic() + seconds
    while True:
        state = client.get(location).json()
        if state["status"] in until or time.monotonic() > deadline:
            return state
        time.sleep(0.2)
