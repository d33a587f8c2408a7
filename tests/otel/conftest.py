"""OpenTelemetry tests: skipped as a whole without the SDK (pip install 'cortexflow[otel]')."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="opentelemetry-sdk is not installed (the otel extra)"
)


class OtlpReceiver:
    """A tiny OTLP/HTTP collector on 127.0.0.1: keeps every span and metric posted to it."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.take(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, path: str, body: bytes) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            with self.lock:
                for rs in request.resource_spans:
                    service = _attrs(rs.resource.attributes).get("service.name")
                    for ss in rs.scope_spans:
                        self.spans += [_span(s, service) for s in ss.spans]
        elif path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            with self.lock:
                for rm in request.resource_metrics:
                    for sm in rm.scope_metrics:
                        self.metrics += [_metric(m) for m in sm.metrics]


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value"))


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _span(s: Any, service: str | None) -> dict[str, Any]:
    return {
        "name": s.name,
        "service": service,
        "trace_id": s.trace_id.hex(),
        "span_id": s.span_id.hex(),
        "parent_id": s.parent_span_id.hex() or None,
        "kind": s.kind,  # 2 server, 4 producer, 5 consumer (OTLP's numbering)
        "attributes": _attrs(s.attributes),
        "status": s.status.code,  # 2: error
        "events": [e.name for e in s.events],
    }


def _metric(m: Any) -> dict[str, Any]:
    kind = m.WhichOneof("data")
    points = getattr(m, kind).data_points
    return {
        "name": m.name,
        "kind": kind,
        "points": [
            {
                "attributes": _attrs(p.attributes),
                "value": p.count if kind == "histogram" else _value(p),  # sum, gauge: the number
            }
            for p in points
        ],
    }


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
