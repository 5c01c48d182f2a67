"""An execution's progress as a stream of server-sent events (``text/event-stream``): its
status when it changes, each new log entry (with its index as the event id, so a client that
reconnects with ``Last-Event-ID`` misses none), and ``end`` when it has ended. One coroutine
per listening client, no thread: it looks for news every ``POLL`` seconds."""


import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from orch.serve.context import Service, user_dependency
from orch.serve.store import ACTIVE

POLL = 0.3
KEEPALIVE = 15.0
"""Seconds between comments that keep proxies from closing a quiet stream."""


def event(kind: str, data: Any, event_id: int | None = None) -> str:
    """One server-sent event; the JSON payload is one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def routes(app: FastAPI, service: Service) -> None:
    User = user_dependency(service)

    @app.get(
        "/executions/{execution_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "events `status`, `log` (id: its index) and `end`"}},
    )  # fmt: skip
    async def execution_events(
        execution_id: str, who: User, request: Request,
        levels: Annotated[int, Query(ge=0, le=15)] = 0,
        from_: Annotated[int, Query(alias="from", ge=0)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:  # fmt: skip
        """Follow the execution until it ends: status changes, log entries from ``from``
        (or after ``Last-Event-ID``), then ``end``."""
        found = await run_in_threadpool(service.own_execution, execution_id, who)
        start = from_
        if last_event_id is not None and last_event_id.strip().isdigit():
            start = int(last_event_id) + 1

        async def stream() -> AsyncIterator[str]:
            sent, status, quiet_since = start, None, time.monotonic()
            execution = found
            while True:
                entries = await run_in_threadpool(service.runner.logs, execution, levels)
                for index in range(sent, len(entries)):
                    yield event("log", entries[index], index)
                    quiet_since = time.monotonic()
                sent = max(sent, len(entries))
                if execution.status != status:
                    status = execution.status
                    yield event("status", {"id": execution.id, "status": status,
                                           "outputs": execution.outputs})  # fmt: skip
                if status not in ACTIVE:
                    yield event("end", {"id": execution.id, "status": status})
                    return
                if time.monotonic() - quiet_since > KEEPALIVE:
                    yield ": still running\n\n"
                    quiet_since = time.monotonic()
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL)
                execution = await run_in_threadpool(service.own_execution, execution_id, who)

        return StreamingResponse(
            stream(), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip
