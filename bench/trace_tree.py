"""Draw the spans of one traced request through two queues as a tree (docs/observability.md).

No trace viewer runs here, so this prints what a viewer would show: a private valkey-server, two
real `cortexflow worker` processes (queue ``front`` and queue ``back``, exporting over OTLP/HTTP
to a receiver this script runs), and in this process a web request's SERVER span (what an
OpenTelemetry HTTP instrumentation makes) that adds a job to ``front``. front's handler adds a
job to ``back`` with ``job.add_job``; back's handler fails its first attempt, so the retry is a
second run. The spans are printed as a tree with their start (ms after the request's) and their
duration.

    python -m bench.trace_tree [--json spans.json]

needs the otel extra (pip install 'cortexflow[otel]').
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.procs import Children, private_server

QUEUES = """\
queues:
  front:
    handler: chain:front
  back:
    handler: chain:back
    attempts: 3
    backoff: {type: fixed, delay: 100ms}
"""

CHAIN = """\
import asyncio

async def front(data, job):
    await asyncio.sleep(0.005)
    await job.add_job("back", "work", {"n": data["n"]})
    return "handed over"

async def back(data, job):
    await asyncio.sleep(0.02)
    if job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "done"
"""

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 keeping every span posted to it."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    receiver.take(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in request.resource_spans:
                attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            {
                                "name": s.name,
                                "service": attrs.get("service.name"),
                                "span_id": s.span_id.hex(),
                                "parent_id": s.parent_span_id.hex() or None,
                                "kind": KINDS.get(s.kind, "?"),
                                "start_ns": s.start_time_unix_nano,
                                "end_ns": s.end_time_unix_nano,
                                "attributes": {
                                    kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
                                    for kv in s.attributes
                                },
                                "error": s.status.code == 2,
                            }
                        )


async def _request(config: Path, url: str) -> list[dict[str, Any]]:
    """A web request's SERVER span around an add to front, in this process; its spans."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cortexflow.api.manager import QueueManager

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    async with QueueManager(config, url) as manager:
        await manager.connect()
        tracer = trace.get_tracer("web")
        with tracer.start_as_current_span("POST /hello", kind=trace.SpanKind.SERVER):
            await manager.add_job("front", "hello", {"n": 1})
    return [
        {
            "name": s.name,
            "service": "web",
            "span_id": format(s.context.span_id, "016x"),
            "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
            "kind": s.kind.name,
            "start_ns": s.start_time,
            "end_ns": s.end_time,
            "attributes": dict(s.attributes or {}),
            "error": not s.status.is_ok,
        }
        for s in exporter.get_finished_spans()
    ]


def _label(s: dict[str, Any]) -> str:
    a = s["attributes"]
    extra = []
    if "cortexflow.job.attempt" in a:
        extra.append(f"attempt {a['cortexflow.job.attempt']}")
    if "cortexflow.job.outcome" in a:
        extra.append(str(a["cortexflow.job.outcome"]))
    if "cortexflow.job.wait_ms" in a:
        extra.append(f"waited {a['cortexflow.job.wait_ms']:.1f} ms")
    if s["error"]:
        extra.append("ERROR")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"{s['name']} [{s['kind']}, {s['service']}]{tail}"


def tree(spans: list[dict[str, Any]]) -> list[str]:
    """The spans as ASCII tree lines: name [kind, service] (details), start +ms, duration."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        by_parent.setdefault(parent, []).append(s)
    roots = sorted(by_parent.get(None, []), key=lambda s: s["start_ns"])
    t0 = min(s["start_ns"] for s in spans)
    rows: list[tuple[str, str]] = []

    def walk(s: dict[str, Any], prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("`-- " if last else "|-- ")
        start = (s["start_ns"] - t0) / 1e6
        took = (s["end_ns"] - s["start_ns"]) / 1e6
        rows.append((prefix + branch + _label(s), f"{start:9.1f} ms {took:8.1f} ms"))
        kids = sorted(by_parent.get(s["span_id"], []), key=lambda k: k["start_ns"])
        for i, kid in enumerate(kids):
            more = "" if root else ("    " if last else "|   ")
            walk(kid, prefix + more, i == len(kids) - 1, False)

    for r in roots:
        walk(r, "", True, True)
    width = max(len(a) for a, _ in rows)
    head = f"{'span':<{width}}  {'start':>12} {'duration':>11}"
    return [head] + [f"{a:<{width}}  {b}" for a, b in rows]


def run(folder: Path) -> list[dict[str, Any]]:
    project = folder / "project"
    project.mkdir()
    (project / "queues.yaml").write_text(QUEUES)
    (project / "chain.py").write_text(CHAIN)
    config = project / "queues.yaml"
    receiver = Receiver()
    children = Children()
    with private_server(folder / "valkey", appendonly=False) as server:
        url = server.url
        env = dict(os.environ)
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="50")
        env["OTEL_METRICS_EXPORTER"] = "none"
        workers = []
        for q in ("front", "back"):
            env["OTEL_SERVICE_NAME"] = f"worker-{q}"
            argv = [sys.executable, "-m", "cortexflow", "worker", q, "-f", str(config)]
            log = folder / f"{q}.log"
            workers.append(
                children.spawn([*argv, "--redis-url", url], env=dict(env), cwd=project, log=log)
            )
        try:
            time.sleep(3.0)  # the workers start (imports, connect)
            web = asyncio.run(_request(config, url))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with receiver.lock:
                    runs = [s for s in receiver.spans if s["kind"] == "CONSUMER"]
                if len(runs) >= 3:
                    break
                time.sleep(0.1)
        finally:
            for w in workers:
                Children.stop(w)
    receiver.server.shutdown()
    return web + receiver.spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the spans to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cf-trace-") as tmp:
        spans = run(Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(spans, indent=1))
    print("\n".join(tree(spans)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
