"""OpenTelemetry in the worker: a CONSUMER span per run and the run metrics (observability.md).

Decided once, when the worker starts (``run_telemetry``): with nothing to report the handler
runner is returned as it is, so a job costs exactly what it did. It reports when

- the worker is a process of its own (``cortexflow worker``, the children of ``up``) and the
  OTEL_* variables ask for an exporter (OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER, or an
  OTLP endpoint): ``telemetry.setup_from_env`` then sets the SDK's providers up, once per
  process;
- or a TracerProvider is already set globally (by the app that embeds the worker, or by the
  handler's module): its spans go wherever that provider sends them.

A run's span is a child of the span that added the job (its W3C context is in the job's
options, engine/tracing.py) and is the current span while the handler runs, so the jobs it adds
(``job.add_job``) and the spans of its own instrumented calls are its children.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cortexflow.engine import tracing
from cortexflow.engine.history import BOUNDS_MS
from cortexflow.engine.jobs import Job
from cortexflow.engine.outcomes import OutcomeKind, decide
from cortexflow.telemetry import setup_from_env
from cortexflow.worker.broker import CortexBroker
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import Run, Runner
from cortexflow.worker.job_run import Lease, RunTimeout, error_message

OUTCOMES = {
    OutcomeKind.COMPLETED: "completed",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.FAILED: "failed",
}


def run_telemetry(runner: Runner, broker: CortexBroker, *, own_process: bool) -> Runner:
    """``runner`` itself when there is nothing to report, else it wrapped in a RunTelemetry."""
    metrics_on = setup_from_env()[1] if own_process else False
    tracer = tracing.tracer()
    meter = None
    if metrics_on:
        from opentelemetry import metrics

        meter = metrics.get_meter("cortexflow")
    if tracer is None and meter is None:
        return runner
    return RunTelemetry(runner, broker, tracer, meter)


class RunTelemetry:
    """The handler runner inside a span per run, and the run metrics of the Prometheus page."""

    def __init__(self, runner: Runner, broker: CortexBroker, tracer: Any, meter: Any) -> None:
        self._runner = runner
        self._broker = broker
        self._tracer = tracer
        self._queue = broker.config
        self._labels = {"queue": self._queue.name}
        self._counters: dict[str, Any] = {}
        if meter is not None:
            self._counters = {
                kind: meter.create_counter(f"cortexflow_jobs_{kind}", unit="1", description=text)
                for kind, text in (
                    ("completed", "Runs completed"),
                    ("failed", "Jobs failed for good"),
                    ("retried", "Runs failed and retried"),
                )
            }
            bounds = [b / 1000.0 for b in BOUNDS_MS]
            self._duration = meter.create_histogram(
                "cortexflow_job_duration_seconds",
                unit="s",
                description="Run time, start -> outcome",
                explicit_bucket_boundaries_advisory=bounds,
            )
            self._wait = meter.create_histogram(
                "cortexflow_job_wait_seconds",
                unit="s",
                description="Wait, enqueue (or due time) -> start",
                explicit_bucket_boundaries_advisory=bounds,
            )

    async def __call__(self, data: Any, ctx: JobContext, run: Run) -> Any:
        lease = self._broker.leases[(ctx.id, ctx._token)]
        job = lease.fetched.job
        started = time.time()
        wait = max(started - job.created_at - job.delay, 0.0)
        span = token = None
        if self._tracer is not None:
            span, token = self._start_span(job, ctx, wait)
        error: BaseException | None = None
        try:
            return await self._runner(data, ctx, run)
        except BaseException as exc:
            error = exc
            raise
        finally:
            outcome = self._outcome(job, lease, error)
            if span is not None:
                _end_span(span, token, outcome, error)
            if self._counters and outcome != "released":
                self._counters[outcome].add(1, self._labels)
                self._duration.record(time.time() - started, self._labels)
                self._wait.record(wait, self._labels)

    def _start_span(self, job: Job, ctx: JobContext, wait: float) -> tuple[Any, Any]:
        from opentelemetry import context, trace

        span = self._tracer.start_span(
            f"process {job.queue}",
            context=tracing.extract(job.opts),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "cortexflow",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "cortexflow.job.name": job.name,
                "cortexflow.job.attempt": ctx.attempt,
                "cortexflow.job.attempts": job.attempts,
                "cortexflow.job.started": ctx.started,
                "cortexflow.job.wait_ms": round(wait * 1000.0, 3),
            },
        )
        return span, context.attach(trace.set_span_in_context(span))

    def _outcome(self, job: Job, lease: Lease, error: BaseException | None) -> str:
        """completed, retried, failed (as the broker will decide), or released: the run was
        stopped by the worker's stop and the job given back, no attempt counted."""
        if error is None:
            return "completed"
        if isinstance(error, asyncio.CancelledError):
            if lease.cancelled and not lease.timed_out:
                return "released"
            if lease.timed_out:
                error = RunTimeout(lease.timeout or 0.0)
        return OUTCOMES[decide(job, error, self._queue, lambda: 0.0).kind]


def _end_span(span: Any, token: Any, outcome: str, error: BaseException | None) -> None:
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("cortexflow.job.outcome", outcome)
    if error is not None and outcome != "released":
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, error_message(error)))
    span.end()
    context.detach(token)
