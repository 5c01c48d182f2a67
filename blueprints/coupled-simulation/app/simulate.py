"""One half of a rod whose heat diffuses, coupled to the other half at their interface.

    simulate.py left|right STEPS [DELAY] [LINGER]

Each half is a simulator of its own (its own job component). Every step they exchange their
boundary temperature through the endpoints orch gave them: the left half serves the coupling
on ORCH_PORT, the right half connects to it at SIM_LEFT_ENDPOINT. Both answer "state" on their
port with their temperatures as JSON, for the live plot. After the last step they keep
answering for LINGER seconds, then end.
"""

import json
import os
import queue
import socket
import sys
import threading
import time

CELLS = 40


def main() -> None:
    side, steps = sys.argv[1], int(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    linger = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    state = {"side": side, "step": 0, "done": False,
             "values": [100.0 if side == "left" else 0.0] * CELLS}
    inbox: queue.Queue = queue.Queue()
    server = socket.create_server((os.environ.get("ORCH_HOST", ""), int(os.environ["ORCH_PORT"])))
    threading.Thread(target=serve, args=(server, state, inbox), daemon=True).start()
    print(f"{side} half listening on {os.environ.get('ORCH_HOST')}:{os.environ['ORCH_PORT']}",
          flush=True)
    for step in range(1, steps + 1):
        if side == "left":
            other = inbox.get(timeout=300)  # the right half's boundary, sent each step
        else:
            other = exchange(os.environ["SIM_LEFT_ENDPOINT"], state["values"][0])
        state["values"] = diffuse(state["values"], other, side)
        state["step"] = step
        if step % 10 == 0 or step == steps:
            mean = sum(state["values"]) / CELLS
            print(f"{side} step {step}/{steps}: mean temperature {mean:.2f}", flush=True)
        time.sleep(delay)
    state["done"] = True
    time.sleep(linger)
    print(f"{side} half done", flush=True)


def diffuse(values: list, other: float, side: str) -> list:
    """One explicit step of the heat equation; the other half's boundary is a ghost cell."""
    padded = ([values[0]] + values + [other]) if side == "left" else ([other] + values + [values[-1]])
    return [padded[i] + 0.25 * (padded[i - 1] - 2 * padded[i] + padded[i + 1])
            for i in range(1, len(padded) - 1)]


def exchange(endpoint: str, mine: float) -> float:
    """Send this half's boundary to the left half, get its boundary back."""
    host, port = endpoint.rsplit(":", 1)
    for _ in range(600):
        try:
            with socket.create_connection((host, int(port)), timeout=30) as conn:
                conn.sendall(f"exchange {mine}\n".encode())
                return float(conn.makefile().readline())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise SystemExit(f"the left half does not answer at {endpoint}")


def serve(server: socket.socket, state: dict, inbox: queue.Queue) -> None:
    while True:
        conn, _ = server.accept()
        with conn:
            request = conn.makefile().readline().strip()
            if request.startswith("exchange "):
                conn.sendall(f"{state['values'][-1]}\n".encode())
                inbox.put(float(request.split()[1]))
            else:
                conn.sendall((json.dumps(state) + "\n").encode())


if __name__ == "__main__":
    main()
