"""The dashboard's ASGI application (Starlette): routes, templates, static files, lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard import api, metrics, pages, protect, sessions, sse
from cortexflow.dashboard.auth import Auth
from cortexflow.dashboard.guard import error, identify
from cortexflow.engine.memory import read_memory
from cortexflow.errors import CortexflowError, RedisUnavailableError


@dataclass(frozen=True)
class Settings:
    metrics_public: bool = False
    max_streams: int = sse.MAX_STREAMS
    max_body: int = protect.DEFAULT_MAX_BODY  # bytes of a request body (API writes)
    # the queue gauges over OpenTelemetry: True once `serve` set a MeterProvider up from the
    # OTEL_* variables (otel_metrics.py); registered when the app starts
    otel_metrics: bool = False


async def healthz(request: Request) -> Response:
    """200 when Redis answers, 503 otherwise; no token needed. With ``?require_workers=1``
    also 503 while a queue has no live worker (`cortexflow health --require-workers`).
    Without a token the body says only ``{"ok": ...}``; with one (read or admin) also why:
    the error, or the per-queue report. At memory pressure (the server's used memory at 90% of
    its maxmemory or more) the body also says ``"memoryPressure": true`` (and, with a token,
    the ``memory`` report), still with 200 unless ``require_workers`` is asked."""
    manager: QueueManager = request.app.state.manager
    known = identify(request.app.state.auth, request) is not None
    try:
        await manager.connect()
        await (await manager.redis_client()).ping()
    except (CortexflowError, RedisError, OSError) as exc:
        return JSONResponse({"ok": False, **({"error": str(exc)} if known else {})}, 503)
    if request.query_params.get("require_workers") in ("1", "true", "yes"):
        report = await manager.health_check(require_workers=True)
        body = {"ok": report["healthy"], **(report if known else {})}
        return JSONResponse(body, status_code=200 if report["healthy"] else 503)
    memory = await read_memory(await manager.redis_client())
    if memory is None or not memory.pressure:
        return JSONResponse({"ok": True})
    # Still 200: the dashboard and the server work (reads, and adds until it is full); a probe
    # that restarts on failure would take the dashboard away when it is needed.
    body = {"ok": True, "memoryPressure": True, **({"memory": memory.report()} if known else {})}
    return JSONResponse(body)


async def metrics_route(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics_public and identify(request.app.state.auth, request) is None:
        return error(401, "a token is required for /metrics (or start with --metrics-public)")
    manager: QueueManager = request.app.state.manager
    try:
        await manager.connect()
        client = await manager.redis_client()
        body = await metrics.render(client, manager.config.redis.prefix, manager.queue_names)
    except (RedisUnavailableError, RedisError, OSError) as exc:
        return error(503, f"Redis does not answer: {exc}")
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def favicon(request: Request) -> Response:
    """/favicon.ico, which browsers ask for whatever the page links: the static SVG icon (no
    token needed, as for /static)."""
    icon = resources.files("cortexflow.dashboard") / "static" / "favicon.svg"
    return Response(
        icon.read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def create_app(manager: QueueManager, auth: Auth, settings: Settings | None = None) -> Starlette:
    """The app over ``manager`` (closed when the app shuts down)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gauges = None
        if app.state.settings.otel_metrics:
            from cortexflow.dashboard import otel_metrics

            gauges = otel_metrics.start(manager)
        try:
            yield
        finally:
            if gauges is not None:
                gauges.closed = True  # the SDK's last collection, at exit, reads nothing
            try:
                await app.state.streams.close()
            finally:
                await manager.close()

    static = str(resources.files("cortexflow.dashboard") / "static")
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_route),
        Route("/favicon.ico", favicon),
        *api.routes,
        *pages.routes,
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(sessions.Sessions, auth=auth, manager=manager)
    app.state.manager = manager
    app.state.auth = auth
    app.state.settings = settings or Settings()
    app.state.streams = sse.Streams(manager, app.state.settings.max_streams)
    protect.install(app, app.state.settings.max_body)  # last: outermost
    return app
