"""OpenTelemetry glue that costs nothing without the ``otel`` extra.

This leaf module never imports opentelemetry itself: ``current_trace_ids`` reads the API module
from ``sys.modules`` (present only when the app, the worker's tracing setup or an instrumentation
imported it), so a process without the extra, or one that never turned tracing on, pays one
dict lookup. The structured logs call it to stamp each line with its trace and span id.
"""

from __future__ import annotations

import sys


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id as 32 hex digits, span id as 16) of the current valid OTel span, or None when
    there is none or opentelemetry is not imported in this process."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        ctx = trace.get_current_span().get_span_context()
    except Exception:  # a broken tracer must not break a log line
        return None
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
