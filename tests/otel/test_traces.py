"""One trace from a web request through the jobs it caused, across worker processes and a retry.

An ASGI app (starlette, with a tiny server-span middleware standing in for an OTel ASGI
instrumentation) adds a job in a process of its own whose spans go to the SDK's
InMemorySpanExporter; two real `cortexflow worker` processes (queue front, queue back) export
theirs over OTLP/HTTP to a receiver this test runs. front's handler adds a job to back with
job.add_job; back's handler fails its first attempt. All the spans must form one tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, clean_env, cortexflow_argv
from tests.helpers.project import write_project
from tests.otel.conftest import OtlpReceiver

SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP span kinds
ERROR = 2

QUEUES = """
queues:
  front:
    handler: chain:front
  back:
    handler: chain:back
    attempts: 3
    backoff: {type: fixed, delay: 100ms}
"""

CHAIN = """
async def front(data, job):
    await job.add_job("back", "work", {"n": data["n"]})
    return "handed over"

async def back(data, job):
    if job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "done"
"""

# The web app, in a process of its own (its global TracerProvider must not leak into other
# tests): POST /hello with a traceparent header adds a job to front; prints its spans as JSON.
APP = """
import asyncio, json, sys
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cortexflow.api.manager import QueueManager

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("app")
config, url = sys.argv[1], sys.argv[2]


class ServerSpans:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        parent = TraceContextTextMapPropagator().extract(headers)
        name = scope["method"] + " " + scope["path"]
        with tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER):
            await self.app(scope, receive, send)


async def hello(request):
    async with QueueManager(config, url) as manager:
        job_id = await manager.add_job("front", "hello", {"n": 1})
    return JSONResponse({"id": job_id})


app = ServerSpans(Starlette(routes=[Route("/hello", hello, methods=["POST"])]))


async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        tp = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"  # the browser's (or proxy's) context
        reply = await client.post("/hello", headers={"traceparent": tp})
    spans = [
        {
            "name": s.name,
            "trace_id": format(s.context.trace_id, "032x"),
            "span_id": format(s.context.span_id, "016x"),
            "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
            "kind": s.kind.name,
            "attributes": dict(s.attributes),
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"id": reply.json()["id"], "spans": spans}))

asyncio.run(main())
"""


def _worker(cfg: Path, queue: str, url: str, otlp: OtlpReceiver, log_dir: Path) -> Proc:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,  # OTLP/HTTP, the extra's exporter
        "OTEL_SERVICE_NAME": f"worker-{queue}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    argv = cortexflow_argv("worker", queue, "-f", str(cfg), "--redis-url", url)
    return Proc(argv, cwd=cfg.parent, log_dir=log_dir, env=env, name=f"worker-{queue}")


def _run_app(cfg: Path, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(cfg.parent / "app.py"), str(cfg), url],
        check=False,
        cwd=cfg.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _one(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, spans)
    return found[0]


@pytest.mark.slow  # ~9 s: two worker processes, a retry's backoff, exporter batches
def test_one_trace_from_a_request_through_two_workers_and_a_retry(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, otlp: OtlpReceiver
) -> None:
    cfg = write_project(tmp_path / "p", QUEUES, {"chain.py": CHAIN, "app.py": APP})
    procs = [_worker(cfg, q, redis_url, otlp, tmp_path) for q in ("front", "back")]
    try:
        wait_workers_ready(redis_client, "front")
        wait_workers_ready(redis_client, "back")
        app = _run_app(cfg, redis_url)
        wait_for(
            lambda: sum(s["kind"] == CONSUMER for s in otlp.spans) >= 3,
            30,
            message=lambda: f"3 run spans; got {otlp.spans}",
        )
    finally:
        for proc in procs:
            proc.stop()
    web, spans = app["spans"], otlp.spans
    trace_id = "ab" * 16  # the incoming request's trace: every span is in it
    assert {s["trace_id"] for s in web + spans} == {trace_id}

    server = _one(web, kind="SERVER")
    assert server["parent_id"] == "cd" * 8
    send_front = _one(web, kind="PRODUCER")
    assert send_front["parent_id"] == server["span_id"]
    assert send_front["name"] == "send front"
    assert send_front["attributes"] == {
        "messaging.system": "cortexflow",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "front",
        "cortexflow.job.name": "hello",
        "messaging.message.id": app["id"],
    }

    run_front = _one(spans, kind=CONSUMER, name="process front")
    assert run_front["service"] == "worker-front"
    assert run_front["parent_id"] == send_front["span_id"]
    a = run_front["attributes"]
    assert a["messaging.message.id"] == app["id"] and a["cortexflow.job.name"] == "hello"
    assert a["messaging.destination.name"] == "front" and a["messaging.system"] == "cortexflow"
    assert (a["cortexflow.job.attempt"], a["cortexflow.job.started"]) == (1, 1)
    assert a["cortexflow.job.outcome"] == "completed" and a["cortexflow.job.wait_ms"] >= 0

    send_back = _one(spans, kind=PRODUCER, name="send back")
    assert send_back["service"] == "worker-front"
    assert send_back["parent_id"] == run_front["span_id"]  # job.add_job inside the run
    back_id = send_back["attributes"]["messaging.message.id"]

    runs = sorted(
        (s for s in spans if s["name"] == "process back"),
        key=lambda s: s["attributes"]["cortexflow.job.attempt"],
    )
    assert [s["service"] for s in runs] == ["worker-back", "worker-back"]
    # each attempt a span, both children of the add
    assert [s["parent_id"] for s in runs] == [send_back["span_id"]] * 2
    assert [s["attributes"]["messaging.message.id"] for s in runs] == [back_id] * 2
    assert [s["attributes"]["cortexflow.job.outcome"] for s in runs] == ["retried", "completed"]
    assert [s["attributes"]["cortexflow.job.attempt"] for s in runs] == [1, 2]
    failed, ok = runs
    assert failed["status"] == ERROR and failed["events"] == ["exception"]
    assert ok["status"] != ERROR and ok["events"] == []
    _check_metrics(otlp)


def _check_metrics(otlp: OtlpReceiver) -> None:
    """The workers' OTel metrics: the Prometheus names, per queue."""

    def latest(name: str, queue: str) -> int | None:
        values = [
            p["value"]
            for m in otlp.metrics
            if m["name"] == name
            for p in m["points"]
            if p["attributes"] == {"queue": queue}
        ]
        return values[-1] if values else None

    wait_for(
        lambda: latest("cortexflow_jobs_completed", "back") == 1,
        10,
        message=lambda: f"metrics: {otlp.metrics}",
    )
    assert latest("cortexflow_jobs_retried", "back") == 1
    assert latest("cortexflow_jobs_completed", "front") == 1
    assert latest("cortexflow_job_duration_seconds", "back") == 2  # a histogram's count
    assert latest("cortexflow_job_wait_seconds", "front") == 1
