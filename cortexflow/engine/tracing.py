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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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


def carrier() -> dict[str, str]:
    """The current span's W3C context (``traceparent``, ``tracestate`` when there is one), or
    ``{}`` when nothing traces in this process: what a job's options, or the fields sent to a
    handler's process, carry."""
    return {} if tracer() is None else _inject()


def _inject() -> dict[str, str]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    out: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(out)
    return out


def extract(fields: Mapping[str, Any]) -> Any:
    """The OTel context of the W3C fields in ``fields`` (a job's options), None without any."""
    if "traceparent" not in fields:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    found = {k: fields[k] for k in ("traceparent", "tracestate") if k in fields}
    return TraceContextTextMapPropagator().extract(found)


def attach(fields: Mapping[str, Any]) -> Any:
    """Make the W3C context in ``fields`` the current one; a token for ``detach``, or None when
    nothing traces in this process (no provider set) or ``fields`` carry no context."""
    if tracer() is None or "traceparent" not in fields:
        return None
    from opentelemetry import context

    return context.attach(extract(fields))


def detach(token: Any) -> None:
    """Undo an ``attach`` (None: nothing was attached)."""
    if token is not None:
        from opentelemetry import context

        context.detach(token)


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
        ids = await add(json.dumps(_inject(), separators=(",", ":"))[1:-1])
        if len(ids) == 1:
            span.set_attribute("messaging.message.id", ids[0])
        return ids
