"""The queue gauges over OpenTelemetry, exported by the dashboard process (observability.md).

The gauges of /metrics (jobs waiting, active, delayed; paused; live workers) describe a queue,
not a process: exported by every worker they would be counted once per worker, so one process
reports them, the dashboard, which reads them for /metrics already. It registers observable
instruments when its own OTEL_* variables ask for a metrics exporter (``telemetry.setup_from_env``);
without the ``otel`` extra nothing here runs and nothing is imported.

The SDK calls the instruments' callbacks in its reader's thread, at each collection
(``OTEL_METRIC_EXPORT_INTERVAL``). The dashboard's Redis client belongs to its event loop, so the
callback does not use it from that thread: it submits the read to the dashboard's loop
(``run_coroutine_threadsafe``) and waits for it, at most ``READ_TIMEOUT``. So each collection
reports what Redis holds at that moment (no snapshot refreshed on a timer of its own, which would
read Redis when no one collects and report values up to one period old), with the same readers
and the same connection as /metrics, and no second client to configure (TLS, ACL, Sentinel,
Cluster). One read serves every instrument of a collection (``FRESH``). A collection when Redis
does not answer reports nothing for that interval, as a failed scrape would.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cortexflow.api.manager import QueueManager
from cortexflow.dashboard import metrics
from cortexflow.engine import history

log = logging.getLogger("cortexflow.dashboard")
READ_TIMEOUT = 5.0  # seconds a collection waits for Redis
FRESH = 1.0  # seconds one read serves the instruments of one collection


@dataclass(frozen=True)
class Reading:
    snapshot: metrics.Snapshot
    failed_for_good: dict[str, int]


class QueueGauges:
    """Observable instruments over the latest reading of the queues, read on ``loop``."""

    def __init__(self, manager: QueueManager, loop: asyncio.AbstractEventLoop) -> None:
        self._manager = manager
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop's own thread
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._latest: Reading | None = None
        self.closed = False

    def register(self, meter: Any) -> None:
        """The instruments, on ``meter`` (the global MeterProvider's ``cortexflow`` meter)."""
        gauges: list[tuple[str, str, Callable[[Reading, dict[str, Any]], float]]] = [
            (f"cortexflow_jobs_{state}", f"Jobs {state} right now", _stat(state))
            for state in ("waiting", "active", "delayed")
        ]
        gauges += [
            ("cortexflow_queue_paused", "1 if paused", lambda r, s: 1 if s["paused"] else 0),
            (
                "cortexflow_workers_alive",
                "Live workers",
                lambda r, s: r.snapshot.workers.get(s["queueName"], 0),
            ),
        ]
        for name, text, value in gauges:
            meter.create_observable_gauge(
                name, callbacks=[self._callback(value)], unit="1", description=text
            )
        meter.create_observable_counter(
            "cortexflow_queue_jobs_failed",
            callbacks=[self._callback(lambda r, s: r.failed_for_good[s["queueName"]])],
            unit="1",
            description="Jobs failed for good (all time, as the queue counts them: "
            "stalled jobs included)",
        )

    def _callback(self, value: Callable[[Reading, dict[str, Any]], float]) -> Any:
        from opentelemetry.metrics import Observation

        def observe(options: Any) -> Iterable[Any]:
            reading = self.reading()
            if reading is None:
                return []
            return [
                Observation(value(reading, s), {"queue": s["queueName"]})
                for s in reading.snapshot.stats
            ]

        return observe

    def reading(self) -> Reading | None:
        """The queues as Redis has them now (a reading under FRESH seconds old is reused);
        None when it cannot be had (Redis away, the dashboard stopping)."""
        with self._lock:
            if time.monotonic() - self._at >= FRESH:
                self._latest = self._read()
                self._at = time.monotonic()
            return self._latest

    def _read(self) -> Reading | None:
        if self.closed or self._loop.is_closed() or threading.get_ident() == self._loop_thread:
            return None  # on the loop's thread a wait for the loop would never end
        future = asyncio.run_coroutine_threadsafe(self._fetch(), self._loop)
        try:
            return future.result(READ_TIMEOUT)
        except Exception as exc:
            future.cancel()
            log.warning("metrics: could not read the queues from Redis: %s", exc)
            return None

    async def _fetch(self) -> Reading:
        m = self._manager
        await m.connect()
        client = await m.redis_client()
        prefix, queues = m.config.redis.prefix, m.queue_names
        snapshot = await metrics.read(client, prefix, queues)
        return Reading(snapshot, await history.failed_for_good(client, prefix, queues))


def _stat(state: str) -> Callable[[Reading, dict[str, Any]], float]:
    return lambda r, s: float(s[state])


def start(manager: QueueManager) -> QueueGauges:
    """Register the gauges on the global MeterProvider, read on the running loop."""
    from opentelemetry import metrics as otel_metrics

    gauges = QueueGauges(manager, asyncio.get_running_loop())
    gauges.register(otel_metrics.get_meter("cortexflow"))
    return gauges
