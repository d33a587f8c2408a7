"""What the dashboard's handlers share: the QueueManager and small readers over it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard import pipeline
from cortexflow.dashboard.guard import HTTPError
from cortexflow.engine import registry
from cortexflow.engine.connection import Client
from cortexflow.engine.memory import read_memory
from cortexflow.engine.queue import QueueEngine


def manager(request: Request) -> QueueManager:
    m: QueueManager = request.app.state.manager
    return m


async def client(request: Request) -> Client:
    return await manager(request).redis_client()


def prefix(request: Request) -> str:
    return manager(request).config.redis.prefix


async def engine(request: Request, queue: str | None = None) -> QueueEngine:
    """The engine of the path's queue; 404 when queues.yaml does not declare it."""
    m = manager(request)
    name = queue if queue is not None else str(request.path_params["queue"])
    if name not in m.config.queues:
        raise HTTPError(404, f"no queue {name!r}; queues: {', '.join(m.queue_names)}")
    await m.connect()
    return m.get_queue(name)


async def memory(request: Request) -> dict[str, Any] | None:
    """The server's memory report (``{usedMemory, maxmemory, percent, policy, pressure}``), for
    the banner shown at memory pressure; None when INFO is refused."""
    reading = await read_memory(await client(request))
    return None if reading is None else reading.report()


def pipeline_plan(request: Request) -> pipeline.Plan | None:
    """The layout of the declared pipeline (laid out once per app: queues.yaml is read once);
    None when no queue has a route or a dead letter."""
    app_state = request.app.state
    if not hasattr(app_state, "pipeline_plan"):
        config = manager(request).config
        app_state.pipeline_plan = pipeline.plan(config) if pipeline.drawn(config) else None
    found: pipeline.Plan | None = app_state.pipeline_plan
    return found


def dead_letter_sources(request: Request) -> dict[str, list[str]]:
    """dead-letter queue -> the queues that send their failed jobs to it."""
    out: dict[str, list[str]] = {}
    for q in manager(request).config.queues.values():
        if q.dead_letter:
            out.setdefault(q.dead_letter, []).append(q.name)
    return out


async def workers(request: Request, queues: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Live workers (heartbeat not expired) of every queue, with their uptime in seconds."""
    m = manager(request)
    c = await client(request)
    now = time.time()
    out: list[dict[str, Any]] = []
    for q in queues if queues is not None else m.queue_names:
        for info in await registry.live_workers(c, m.config.redis.prefix, q):
            started = info.get("started_at")
            uptime = round(now - float(started), 1) if isinstance(started, int | float) else None
            out.append({**info, "queue": q, "uptime": uptime})
    return out
