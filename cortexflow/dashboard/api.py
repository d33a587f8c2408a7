"""The JSON API under /api/: the CLI's operations over HTTP (see docs/dashboard.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cortexflow.api.jsoninput import JsonInputError, parse_json
from cortexflow.dashboard import pipeline, state
from cortexflow.dashboard.guard import HTTPError, api, error
from cortexflow.dashboard.protect import problem_with_event_id
from cortexflow.dashboard.sse import events_route, multi_events_route
from cortexflow.engine import history
from cortexflow.engine.keys import STATES
from cortexflow.engine.payload import encode_data, make_validator
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import PayloadError

MAX_LIMIT = 200
MAX_START = 2**53 - 1  # a window's start: the largest integer every JSON reader keeps exact
CLEAN_STATES = ("completed", "failed", "waiting", "delayed")


def _int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(422, f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise HTTPError(422, f"{name} must be {span}, got {value}")
    return value


async def _body(request: Request, default: Any = None) -> Any:
    """The JSON body, read within the dashboard's body cap (protect.BodyLimit: 413 past it)
    and checked as the CLI checks a payload (api.jsoninput: UTF-8, nesting up to 100 levels,
    no lone surrogates); 422 with what is wrong and where."""
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        return parse_json(raw)
    except JsonInputError as exc:
        where = f" (line {exc.line}, column {exc.column})" if exc.line is not None else ""
        where = f" (at {exc.pointer or '/'})" if exc.pointer is not None else where
        raise HTTPError(422, f"the body is not usable JSON: {exc.message}{where}") from None


@api(write=False)
async def list_queues(request: Request) -> Response:
    return JSONResponse(await state.manager(request).get_all_queue_stats())


@api(write=False)
async def list_jobs(request: Request) -> Response:
    engine = await state.engine(request)
    st = request.query_params.get("state") or "waiting"
    if st not in STATES:
        raise HTTPError(422, f"state must be one of {', '.join(STATES)}; got {st!r}")
    start = _int(request, "start", 0, 0, MAX_START)
    limit = _int(request, "limit", 20, 1, MAX_LIMIT)
    group = request.query_params.get("group")
    if group is not None:  # a group's jobs (docs/groups.md): the first `limit`, no window
        found = await engine.groups.jobs(group, st, limit)
        return JSONResponse(
            {"queue": engine.name, "state": st, "group": group, "limit": limit}
            | {"jobs": [j.to_dict() for j in found]}
        )
    jobs = await engine.list_jobs(st, start, limit)
    total = await engine.client.zcard(engine.keys.state_key(st))
    return JSONResponse(
        {
            "queue": engine.name,
            "state": st,
            "start": start,
            "limit": limit,
            "total": int(total),
            "jobs": [j.to_dict() for j in jobs],
        }
    )


def _job_spec(item: Any, index: int | None) -> Mapping[str, Any]:
    where = "the body" if index is None else f"job {index}"
    if not isinstance(item, Mapping):
        raise HTTPError(422, f"{where} must be an object {{name, data, opts}}")
    if not isinstance(item.get("name"), str) or not item["name"]:
        raise HTTPError(422, f"{where}: name must be a non-empty string")
    if "data" not in item:
        raise HTTPError(422, f"{where}: data is required (a JSON object)")
    return item


@api(write=True)
async def add_jobs(request: Request) -> Response:
    """One job ``{name, data, opts}`` -> 201 {id, queue}; a list -> 201 {ids}, all or none."""
    engine = await state.engine(request)
    body = await _body(request)
    single = not isinstance(body, list)
    specs = [_job_spec(body, None)] if single else [_job_spec(b, i) for i, b in enumerate(body)]
    if not specs:
        raise HTTPError(422, "the list of jobs is empty")
    try:
        ids = await state.manager(request).add_bulk(engine.name, specs)
    except PayloadError as exc:
        if single:
            raise
        raise _every_violation(engine, specs) or exc from None
    if single:
        return JSONResponse({"id": ids[0], "queue": engine.name}, status_code=201)
    return JSONResponse({"ids": ids, "queue": engine.name}, status_code=201)


def _every_violation(engine: QueueEngine, specs: list[Mapping[str, Any]]) -> PayloadError | None:
    """A bulk add stops at its first bad payload; report every one of them instead."""
    validator = make_validator(engine.config)
    found: list[tuple[str, str]] = []
    for i, spec in enumerate(specs):
        try:
            encode_data(engine.name, spec["data"], validator)
        except PayloadError as bad:
            found += [(f"/{i}{p}", m) for p, m in bad.violations]
    return PayloadError(engine.name, found) if found else None


@api(write=False)
async def get_job(request: Request) -> Response:
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    job = await engine.get_job(job_id)
    if job is None:
        raise HTTPError(404, f"no job {job_id!r} in queue {engine.name!r}")
    return JSONResponse({**job.to_dict(), "logs": await engine.get_logs(job_id)})


async def _not_in_state(engine: QueueEngine, job_id: str, wanted: str) -> HTTPError:
    job = await engine.get_job(job_id)
    if job is None:
        return HTTPError(404, f"no job {job_id!r} in queue {engine.name!r}")
    return HTTPError(409, f"job {job_id!r} is {job.state}, not {wanted}", state=job.state)


@api(write=True)
async def delete_job(request: Request) -> Response:
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    if not await engine.remove(job_id):
        raise HTTPError(404, f"no job {job_id!r} in queue {engine.name!r}")
    return JSONResponse({"removed": job_id})


@api(write=True)
async def retry_job(request: Request) -> Response:
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    if not await engine.retry([job_id]):
        raise await _not_in_state(engine, job_id, "failed")
    return JSONResponse({"retried": [job_id]})


@api(write=True)
async def promote_job(request: Request) -> Response:
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    if not await engine.promote(job_id):
        raise await _not_in_state(engine, job_id, "delayed")
    return JSONResponse({"promoted": job_id})


@api(write=True)
async def replay_job(request: Request) -> Response:
    """A dead letter -> a new job on its source queue (same name and data); the dead letter
    is removed once the new job is in."""
    engine = await state.engine(request)
    job_id = request.path_params["job_id"]
    job = await engine.get_job(job_id)
    if job is None:
        raise HTTPError(404, f"no job {job_id!r} in queue {engine.name!r}")
    env = job.data if isinstance(job.data, dict) else {}
    source = env.get("queue")
    if not isinstance(source, str) or "data" not in env or not isinstance(env.get("name"), str):
        raise HTTPError(422, f"job {job_id!r} is not a dead letter (no source queue in its data)")
    target = await state.engine(request, source)
    new_id = await target.add(env["name"], env["data"])
    await engine.remove(job_id)
    return JSONResponse({"id": new_id, "queue": target.name}, status_code=201)


async def _group_of(request: Request) -> str | None:
    """The optional body {"group": "..."} of pause and resume: that group only."""
    body = await _body(request, {})
    group = body.get("group") if isinstance(body, dict) else None
    if group is not None and not isinstance(group, str):
        raise HTTPError(422, f"group is a string; got {group!r}")
    return group


@api(write=True)
async def pause(request: Request) -> Response:
    """Body (optional): {"group": "..."} pauses that group of the queue only."""
    engine = await state.engine(request)
    if (group := await _group_of(request)) is not None:
        changed = await engine.groups.pause(group, True)
        return JSONResponse(
            {"queue": engine.name, "group": group, "paused": True} | {"changed": changed}
        )
    await engine.pause()
    return JSONResponse({"queue": engine.name, "paused": True})


@api(write=True)
async def resume(request: Request) -> Response:
    """Body (optional): {"group": "..."} resumes that group of the queue only."""
    engine = await state.engine(request)
    if (group := await _group_of(request)) is not None:
        changed = await engine.groups.pause(group, False)
        return JSONResponse(
            {"queue": engine.name, "group": group, "paused": False} | {"changed": changed}
        )
    await engine.resume()
    return JSONResponse({"queue": engine.name, "paused": False})


@api(write=False)
async def groups(request: Request) -> Response:
    """The groups with the most waiting jobs (?limit=, default 20), active and paused ones."""
    engine = await state.engine(request)
    return JSONResponse(await engine.groups.stats(_int(request, "limit", 20, 1, 10_000)))


@api(write=True)
async def clean(request: Request) -> Response:
    """Body (all optional): {"state": "completed", "grace": ms (0), "limit": n (0: all)}."""
    engine = await state.engine(request)
    body = await _body(request, {})
    if not isinstance(body, dict):
        raise HTTPError(422, "the body is an object {state, grace, limit}")
    st = body.get("state", "completed")
    grace, limit = body.get("grace", 0), body.get("limit", 0)
    if st not in CLEAN_STATES:
        raise HTTPError(422, f"state must be one of {', '.join(CLEAN_STATES)}; got {st!r}")
    if not isinstance(grace, int | float) or isinstance(grace, bool) or grace < 0:
        raise HTTPError(422, f"grace is a number of milliseconds >= 0; got {grace!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise HTTPError(422, f"limit is an integer >= 0 (0: all); got {limit!r}")
    removed = await engine.clean(grace / 1000.0, limit, st)
    return JSONResponse({"removed": removed})


@api(write=True)
async def drain(request: Request) -> Response:
    """Body (optional): {"delayed": true} to remove delayed jobs too."""
    engine = await state.engine(request)
    body = await _body(request, {})
    delayed = bool(body.get("delayed")) if isinstance(body, dict) else False
    return JSONResponse({"removed": await engine.drain(delayed)})


@api(write=True)
async def retry_all(request: Request) -> Response:
    engine = await state.engine(request)
    return JSONResponse({"retried": await engine.retry(None)})


@api(write=False)
async def pipeline_graph(request: Request) -> Response:
    """The declared pipeline (queues.yaml's `next:` routes, joins and dead letters) laid out
    as the overview draws it: {nodes, edges} (pipeline.to_json); no Redis call."""
    config = state.manager(request).config
    return JSONResponse(pipeline.to_json(state.pipeline_plan(request) or pipeline.plan(config)))


@api(write=False)
async def workers(request: Request) -> Response:
    return JSONResponse(await state.workers(request))


@api(write=False)
async def queue_metrics(request: Request) -> Response:
    """Per-minute completed/failed/retried and duration/wait for the last ``minutes`` (60)."""
    engine = await state.engine(request)
    minutes = _int(request, "minutes", 60, 1, history.KEEP_MINUTES)
    rows = await history.per_minute(engine.client, engine.prefix, engine.name, minutes)
    return JSONResponse(
        {
            "queue": engine.name,
            "minutes": [
                {
                    "t": t,
                    "completed": s.completed,
                    "failed": s.failed,
                    "retried": s.retried,
                    "durationAvgMs": round(s.duration_sum_ms / s.runs, 1) if s.runs else None,
                    "waitAvgMs": round(s.wait_sum_ms / s.runs, 1) if s.runs else None,
                }
                for t, s in rows
            ],
            "summary": history.merge([s for _, s in rows]).to_dict(),
        }
    )


def _bad_resume_point(request: Request) -> Response | None:
    """A Last-Event-ID (or ?from=) that is not a stream id: a 400 before the stream starts,
    not an error inside it."""
    start = request.headers.get("last-event-id") or request.query_params.get("from") or ""
    problem = problem_with_event_id(start) if start else None
    return error(400, problem) if problem else None


async def events(request: Request) -> Response:
    """One queue's SSE stream, after the resume point is checked."""
    return _bad_resume_point(request) or await events_route(request)


async def all_events(request: Request) -> Response:
    """Several queues' SSE stream (?queues=a,b or all), after the resume point is checked."""
    return _bad_resume_point(request) or await multi_events_route(request)


routes = [
    Route("/api/queues", list_queues),
    Route("/api/workers", workers),
    Route("/api/pipeline", pipeline_graph),
    Route("/api/queues/{queue}/jobs", list_jobs, methods=["GET"]),
    Route("/api/queues/{queue}/jobs", add_jobs, methods=["POST"]),
    Route("/api/queues/{queue}/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/queues/{queue}/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/api/queues/{queue}/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/api/queues/{queue}/jobs/{job_id}/promote", promote_job, methods=["POST"]),
    Route("/api/queues/{queue}/jobs/{job_id}/replay", replay_job, methods=["POST"]),
    Route("/api/queues/{queue}/pause", pause, methods=["POST"]),
    Route("/api/queues/{queue}/resume", resume, methods=["POST"]),
    Route("/api/queues/{queue}/groups", groups, methods=["GET"]),
    Route("/api/queues/{queue}/clean", clean, methods=["POST"]),
    Route("/api/queues/{queue}/drain", drain, methods=["POST"]),
    Route("/api/queues/{queue}/retry", retry_all, methods=["POST"]),
    Route("/api/queues/{queue}/metrics", queue_metrics),
    Route("/api/queues/{queue}/events", events),
    Route("/api/events", all_events),
]
