"""The live plot of both halves of the rod, served over HTTP on ORCH_PORT.

    plot.py [LINGER]

It asks each half for its state (at SIM_LEFT_ENDPOINT and SIM_RIGHT_ENDPOINT) every half
second and serves a page that draws them (/), and the numbers (/state.json). Once both halves
are done it keeps serving for LINGER seconds, then ends.
"""

import http.server
import json
import os
import socket
import sys
import threading
import time

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coupled rod: live</title></head>
<body><h1>Temperature along the rod</h1><p id="step">waiting for the simulators...</p>
<svg id="plot" width="800" height="300" viewBox="0 0 800 300" role="img"
 aria-label="temperature along the rod"></svg>
<script>
async function draw() {
  const state = await (await fetch("state.json")).json();
  const cells = [...(state.left.values || []), ...(state.right.values || [])];
  const step = 800 / Math.max(cells.length - 1, 1);
  const points = cells.map((t, i) => `${i * step},${300 - 3 * t}`).join(" ");
  document.getElementById("plot").innerHTML =
    `<polyline fill="none" stroke="crimson" stroke-width="3" points="${points}"/>`;
  document.getElementById("step").textContent =
    `left step ${state.left.step}, right step ${state.right.step}`;
}
setInterval(draw, 1000); draw();
</script></body></html>
"""
STATE = {"left": {}, "right": {}}


def ask(endpoint: str) -> dict:
    host, port = endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"state\n")
        return json.loads(conn.makefile().readline())


def poll(linger: float) -> None:
    done_at = None
    while done_at is None or time.time() - done_at < linger:
        for side in ("left", "right"):
            try:
                STATE[side] = ask(os.environ[f"SIM_{side.upper()}_ENDPOINT"])
            except (OSError, ValueError):
                pass  # not up yet, or already gone
        if done_at is None and all(STATE[s].get("done") for s in STATE):
            done_at = time.time()
            print("both halves done", flush=True)
        time.sleep(0.5)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/state.json"):
            body, kind = json.dumps(STATE).encode(), "application/json"
        else:
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    linger = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    address = (os.environ.get("ORCH_HOST", ""), int(os.environ["ORCH_PORT"]))
    server = http.server.ThreadingHTTPServer(address, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"live plot on http://{address[0]}:{address[1]}/ (orch connect reaches it)", flush=True)
    poll(linger)
    server.shutdown()


if __name__ == "__main__":
    main()
