"""GET /api/queues/{queue}/events: the queue's event stream as Server-Sent Events.

Each event is sent as ``id: <stream id>``, ``event: <name>``, ``data: <JSON>``. A client that
reconnects with ``Last-Event-ID`` (browsers do it by themselves), or asks ``?from=<id>``,
gets what it missed (as far as the capped stream still holds it); otherwise it starts with
what happens next. A comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cortexflow.dashboard import state
from cortexflow.dashboard.guard import api
from cortexflow.engine import events

BLOCK = 1.0  # one blocking read, seconds: how soon a closed connection is noticed
KEEPALIVE = 15.0


def format_event(event: events.Event) -> str:
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


@api(write=False)
async def events_route(request: Request) -> Response:
    engine = await state.engine(request)
    start = request.headers.get("last-event-id") or request.query_params.get("from") or ""
    if not start:
        start = await events.last_id(engine.client, engine.prefix, engine.name)

    async def stream() -> AsyncIterator[str]:
        after = start
        last_sent = time.monotonic()
        yield ": connected\n\n"
        while not await request.is_disconnected():
            got = await events.read(engine.client, engine.prefix, engine.name, after, BLOCK)
            for event in got:
                yield format_event(event)
                after = event.id
            if got:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
