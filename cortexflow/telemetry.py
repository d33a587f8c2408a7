"""OpenTelemetry glue that costs nothing without the ``otel`` extra.

This leaf module imports opentelemetry only inside ``setup_from_env``, and only when the OTEL_*
variables ask for an exporter. ``current_trace_ids`` reads the API module from ``sys.modules``
(present only when the app, the tracing setup or an instrumentation imported it), so a process
without the extra, or one that never turned tracing on, pays one dict lookup. The structured
logs call it to stamp each line with its trace and span id.

``setup_from_env`` sets the SDK's providers up from the standard variables, once per process:
the worker (traces and metrics), a handler's own process under ``isolation: process`` (traces:
the spans its handler makes) and the dashboard (metrics: the queue gauges) each call it.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger("cortexflow.telemetry")
_configured: tuple[bool, bool] | None = None  # (traces, metrics) set up from the environment


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


def _exporters(signal: str) -> list[str]:
    """The exporter names OTEL_<SIGNAL>_EXPORTER asks for; unset: OTLP when an endpoint is."""
    raw = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    if raw is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    return [n for n in (x.strip() for x in raw.split(",")) if n and n != "none"]


def _load(signal: str, name: str) -> Any:
    """A new exporter, by the name its package registers (``otlp``: the protocol's one)."""
    if name == "otlp":
        grpc = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"
        name = "otlp_proto_grpc" if grpc else "otlp_proto_http"
    found = entry_points(group=f"opentelemetry_{signal}_exporter", name=name)
    if not found:
        log.warning("OTEL_%s_EXPORTER: no exporter %r is installed", signal.upper(), name)
        return None
    return next(iter(found)).load()()


def setup_from_env(*, traces: bool = True, metrics: bool = True) -> tuple[bool, bool]:
    """Set the SDK's tracer and/or meter provider up from the OTEL_* variables; returns which
    were. Once per process: the first call decides (which signals it asks for included).
    Nothing is imported when the variables ask for nothing."""
    global _configured
    if _configured is not None:
        return _configured
    _configured = (False, False)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return _configured
    span_names = _exporters("traces") if traces else []
    metric_names = _exporters("metrics") if metrics else []
    if not span_names and not metric_names:
        return _configured
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning(
            "the OTEL_* variables ask for telemetry, but the otel extra is not installed "
            "(pip install 'cortexflow[otel]'): nothing is exported"
        )
        return _configured
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": "cortexflow"})
    _configured = (
        _trace_provider(resource, span_names),
        _meter_provider(resource, metric_names),
    )
    return _configured


def _trace_provider(resource: Any, names: list[str]) -> bool:
    if not names:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [e for e in (_load("traces", n) for n in names) if e is not None]
    if not exporters:
        return False
    provider = TracerProvider(resource=resource)  # flushed at exit (shutdown_on_exit)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def _meter_provider(resource: Any, names: list[str]) -> bool:
    if not names:
        return False
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporters = [e for e in (_load("metrics", n) for n in names) if e is not None]
    if not exporters:
        return False
    readers = [PeriodicExportingMetricReader(e) for e in exporters]
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return True


def flush_traces(timeout_ms: int = 5000) -> None:
    """Export the spans ended so far (a process about to be SIGKILLed at any time, as a
    handler's process is, cannot count on the exit flush); nothing without a provider."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        try:
            flush(timeout_ms)
        except Exception as exc:  # an exporter's failure must not fail the job
            log.warning("could not export the spans: %s", exc)
