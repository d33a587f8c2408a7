"""The web UI: server-rendered pages whose live parts are fragments the script re-fetches.

Every page (and fragment) needs a session: without one it is the login form and nothing else.
``/?token=...`` logs a browser in (cookie) and redirects to the same URL without the token.
Buttons and forms call the JSON API with the page's CSRF token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cortexflow.dashboard import charts, pipeline_svg, state
from cortexflow.dashboard.auth import COOKIE, Auth
from cortexflow.dashboard.guard import HTTPError, Principal, identify
from cortexflow.engine import events, history
from cortexflow.engine.jobs import Job
from cortexflow.engine.keys import STATES
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import RedisUnavailableError
from cortexflow.termsafe import escape_controls

PAGE_SIZE = 25
MAX_START = 2**53 - 1
NAME_SCAN = 5000  # jobs a search by name looks at, from the page shown
SESSION_DAYS = 30

_env = Environment(
    loader=FileSystemLoader(str(resources.files("cortexflow.dashboard") / "templates")),
    autoescape=select_autoescape(["html"]),
)
_env.filters["ts"] = lambda v: (
    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v)) + f".{int(v * 1000) % 1000:03d} UTC"
    if v
    else "—"
)
_env.filters["ago"] = lambda v: _ago(v) if v else "—"
# Text from outside (ids, names, errors, logs) goes through these: `urlpart` wherever it is put
# into a URL (one path segment, every reserved character encoded: the server decodes it
# exactly once), `shown` (one line) / `shown_lines` wherever it is shown, so control and
# bidi-override characters (and lone surrogates, which no page could be encoded with) appear
# escaped, as the CLI shows them. Autoescaping still applies after both.
_env.filters["urlpart"] = lambda v: quote(str(v), safe="")
_env.filters["shown"] = lambda v: escape_controls(str(v), keep_newlines=False)
_env.filters["shown_lines"] = lambda v: escape_controls(str(v))


def _ago(seconds_since_epoch: float) -> str:
    d = max(time.time() - seconds_since_epoch, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            return f"{int(d // size)}{unit} ago"
    return f"{int(d)}s ago"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s"


_env.filters["uptime"] = _uptime


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    auth: Auth = request.app.state.auth
    who: Principal | None = ctx.get("who")
    ctx.setdefault("csrf", auth.csrf_for(who.role) if who else "")
    ctx.setdefault("title", "cortexflow")
    html = _env.get_template(name).render(request=request, **ctx)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def login_form(request: Request, message: str = "") -> HTMLResponse:
    return render(request, "login.html", status=401, who=None, message=message)


def _session(request: Request) -> Principal | None:
    return identify(request.app.state.auth, request)


def _login_redirect(request: Request, role: str) -> Response:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    url = request.url.path + (f"?{urlencode(query)}" if query else "")
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        request.app.state.auth.session_for(role),
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def _page(request: Request, fn: Callable[[Principal], Awaitable[Response]]) -> Response:
    """Log in from ``?token=``, show the login form without a session, else render ``fn``."""
    token = request.query_params.get("token")
    if token is not None:
        role = request.app.state.auth.role_for_token(token)
        if role is None:
            return login_form(request, "That token is not valid.")
        return _login_redirect(request, role)
    who = _session(request)
    if who is None:
        return login_form(request)
    try:
        return await fn(who)
    except HTTPError as exc:
        return render(request, "error.html", status=exc.status, who=who, message=str(exc))
    except (RedisUnavailableError, RedisConnectionError, RedisTimeoutError) as exc:
        return render(request, "error.html", status=503, who=who, message=str(exc))


async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    role = request.app.state.auth.role_for_token(token) if token else None
    if role is None:
        return login_form(request, "That token is not valid.")
    response = _login_redirect(request, role)
    response.headers["location"] = "/"
    return response


async def logout(request: Request) -> Response:
    who = _session(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    if who and not request.app.state.auth.csrf_ok(who.role, (form.get("csrf") or [""])[0]):
        return HTMLResponse("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- overview --------------------------------------------------------------------------------


async def _overview_ctx(request: Request) -> dict[str, Any]:
    m = state.manager(request)
    stats = await m.get_all_queue_stats()
    workers = await state.workers(request)
    per_queue: dict[str, int] = {}
    for w in workers:
        per_queue[w["queue"]] = per_queue.get(w["queue"], 0) + 1
    memory = await state.memory(request)
    plan = state.pipeline_plan(request)
    drawing = pipeline_svg.render(plan, {s["queueName"]: s for s in stats}) if plan else ""
    return {
        "stats": stats,
        "workers": workers,
        "per_queue": per_queue,
        "memory": memory,
        "pipeline": drawing,
    }


async def overview(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        ctx = await _overview_ctx(request)
        chart = await _chart(request)
        return render(request, "overview.html", who=who, chart=chart, **ctx)

    return await _page(request, show)


async def overview_fragment(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        return render(request, "_overview.html", who=who, **await _overview_ctx(request))

    return await _page(request, show)


async def _chart(request: Request) -> str:
    m = state.manager(request)
    client = await state.client(request)
    series: dict[str, list[tuple[int, int, int]]] = {}
    for q in m.queue_names:
        rows = await history.per_minute(client, m.config.redis.prefix, q, 60)
        series[q] = [(t, s.completed, s.failed) for t, s in rows]
    return charts.throughput_svg(series)


async def chart_fragment(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        return HTMLResponse(await _chart(request), headers={"Cache-Control": "no-store"})

    return await _page(request, show)


# -- queue -----------------------------------------------------------------------------------


def _window(request: Request) -> tuple[str, int]:
    st = request.query_params.get("state") or "waiting"
    if st not in STATES:
        raise HTTPError(404, f"no state {st!r}; states: {', '.join(STATES)}")
    try:
        start = min(max(int(request.query_params.get("start") or 0), 0), MAX_START)
    except ValueError:
        start = 0
    return st, start


async def _queue_ctx(request: Request) -> dict[str, Any]:
    engine = await state.engine(request)
    st, start = _window(request)
    name_filter = (request.query_params.get("name") or "").strip()
    scanned = 0
    if name_filter:
        jobs, scanned = await _find_by_name(engine, st, start, name_filter.lower())
    else:
        jobs = await engine.list_jobs(st, start, PAGE_SIZE)
    stats = await engine.stats()
    workers = await state.workers(request, [engine.name])
    return {
        "queue": engine.name,
        "config": engine.config,
        "stats": stats,
        "state": st,
        "states": STATES,
        "start": start,
        "page_size": PAGE_SIZE,
        "total": stats[st],
        "jobs": jobs,
        "name_filter": name_filter,
        "scanned": scanned,
        "workers": workers,
        "sources": state.dead_letter_sources(request).get(engine.name, []),
        "recent": await events.recent(engine.client, engine.prefix, engine.name, 15),
        "memory": await state.memory(request),
        "groups": await engine.groups.stats(10) if engine.config.group else None,
    }


async def _find_by_name(
    engine: QueueEngine, state: str, start: int, needle: str
) -> tuple[list[Job], int]:
    """Up to PAGE_SIZE jobs of ``state`` whose name contains ``needle``, looking at no more
    than NAME_SCAN jobs from ``start`` (windows of 500: bounded with a million jobs too).
    Returns the matches and how many jobs were looked at."""
    found: list[Job] = []
    scanned = 0
    while scanned < NAME_SCAN and len(found) < PAGE_SIZE:
        batch = await engine.list_jobs(state, start + scanned, 500)
        if not batch:
            break
        scanned += len(batch)
        found += [j for j in batch if needle in j.name.lower()]
    return found[:PAGE_SIZE], scanned


async def queue_page(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        find = (request.query_params.get("find") or "").strip()
        if find:
            engine = await state.engine(request)
            if await engine.get_job(find) is not None:
                url = f"/queues/{quote(engine.name, safe='')}/jobs/{quote(find, safe='')}"
                return RedirectResponse(url, status_code=303)
        ctx = await _queue_ctx(request)
        missing = f"No job {escape_controls(find)!r} in this queue." if find else ""
        return render(request, "queue.html", who=who, missing=missing, **ctx)

    return await _page(request, show)


async def queue_fragment(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        return render(request, "_queue.html", who=who, **await _queue_ctx(request))

    return await _page(request, show)


# -- job -------------------------------------------------------------------------------------


async def _job_ctx(request: Request) -> dict[str, Any]:
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    job = await engine.get_job(job_id)
    if job is None:
        raise HTTPError(
            404,
            f"no job {job_id!r} in queue {engine.name!r} (finished jobs are "
            "removed as the queue's retention says)",
        )
    envelope = job.data if isinstance(job.data, dict) else {}
    replay = engine.name in state.dead_letter_sources(request) and isinstance(
        envelope.get("queue"), str
    )
    return {
        "queue": engine.name,
        "job": job,
        "logs": await engine.get_logs(job_id),
        "replay_to": envelope.get("queue") if replay else None,
    }


async def job_page(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        return render(request, "job.html", who=who, **await _job_ctx(request))

    return await _page(request, show)


async def job_fragment(request: Request) -> Response:
    async def show(who: Principal) -> Response:
        return render(request, "_job.html", who=who, **await _job_ctx(request))

    return await _page(request, show)


routes = [
    Route("/", overview),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/fragments/overview", overview_fragment),
    Route("/fragments/chart", chart_fragment),
    Route("/queues/{queue}", queue_page),
    Route("/fragments/queues/{queue}", queue_fragment),
    Route("/queues/{queue}/jobs/{job_id}", job_page),
    Route("/fragments/queues/{queue}/jobs/{job_id}", job_fragment),
]
