"""The producer side of tracing: a span per add, its W3C trace context stored with the jobs.

Nothing here imports opentelemetry unless the process already did (the ``otel`` extra installed
and loaded, by the app or by redis-py) and a real TracerProvider is set globally, by the app or
by the worker from the OTEL_* variables (cortexflow.worker.otel). Until then ``tracer()`` is a
dict lookup and a type check per add. A provider, once set, cannot be replaced, so the tracer
is looked up once.

The context travels inside the job's ``opts`` JSON (``traceparent``, and ``tracestate`` when
there is one): add.lua and fetch.lua already store and return that field, so an untraced job's
hash and the fetch reply are exactly what they were, and the worker reads it back from the
options it parses anyway (docs/observability.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

_tracer: Any = None


def tracer() -> Any | None:
    """The cortexflow tracer of the global TracerProvider once one is set, else None."""
    global _tracer
    if _tracer is not None:
        return _tracer
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    _tracer = trace.get_tracer("cortexflow")
    return _tracer


def with_context(options: str, fields: str) -> str:
    """The job's stored options JSON (``''`` for none) with the trace fields added."""
    return "{" + fields + "}" if not options else options[:-1] + "," + fields + "}"


async def traced_add(
    tracer: Any,
    queue: str,
    jobs: Sequence[tuple[str, Any, Any]],
    add: Callable[[str], Awaitable[list[str]]],
) -> list[str]:
    """Run ``add(fields)`` inside a PRODUCER span ``send <queue>``; ``fields`` is the span's
    W3C context as JSON members for the jobs' options. A bulk add is one span (its jobs are
    each a child of it: ``messaging.batch.message_count`` says how many)."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    attributes: dict[str, Any] = {
        "messaging.system": "cortexflow",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue,
    }
    if len(jobs) == 1:
        attributes["cortexflow.job.name"] = jobs[0][0]
    else:
        attributes["messaging.batch.message_count"] = len(jobs)
    with tracer.start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        ids = await add(json.dumps(carrier, separators=(",", ":"))[1:-1])
        if len(ids) == 1:
            span.set_attribute("messaging.message.id", ids[0])
        return ids
