"""GET /metrics: Prometheus text format, built with prometheus_client from one snapshot.

Per queue (label ``queue``): gauges of waiting / active / delayed jobs and paused, counters of
jobs completed and failed (all-time totals kept by the engine), histograms of run duration and
wait time (enqueue or due time -> start), and the number of live workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cortexflow.engine import history, registry
from cortexflow.engine.connection import Client
from cortexflow.engine.history import BOUNDS_MS, Summary
from cortexflow.engine.queue import all_stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Snapshot(Collector):
    """The metrics of one scrape, already read from Redis."""

    def __init__(
        self,
        stats: Sequence[dict[str, Any]],
        totals: dict[str, Summary],
        workers: dict[str, int],
    ) -> None:
        self.stats = stats
        self.totals = totals
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        gauges = {
            state: GaugeMetricFamily(
                f"cortexflow_jobs_{state}", f"Jobs {state} right now", labels=["queue"]
            )
            for state in ("waiting", "active", "delayed")
        }
        paused = GaugeMetricFamily("cortexflow_queue_paused", "1 if paused", labels=["queue"])
        alive = GaugeMetricFamily("cortexflow_workers_alive", "Live workers", labels=["queue"])
        completed = CounterMetricFamily(
            "cortexflow_jobs_completed", "Runs completed (all time)", labels=["queue"]
        )
        failed = CounterMetricFamily(
            "cortexflow_jobs_failed", "Jobs failed for good (all time)", labels=["queue"]
        )
        retried = CounterMetricFamily(
            "cortexflow_jobs_retried", "Runs failed and retried (all time)", labels=["queue"]
        )
        duration = HistogramMetricFamily(
            "cortexflow_job_duration_seconds", "Run time, start -> outcome", labels=["queue"]
        )
        wait = HistogramMetricFamily(
            "cortexflow_job_wait_seconds", "Wait, enqueue (or due time) -> start", labels=["queue"]
        )
        for s in self.stats:
            q = s["queueName"]
            for state, g in gauges.items():
                g.add_metric([q], s[state])
            paused.add_metric([q], 1 if s["paused"] else 0)
            alive.add_metric([q], self.workers.get(q, 0))
            t = self.totals[q]
            completed.add_metric([q], t.completed)
            failed.add_metric([q], t.failed)
            retried.add_metric([q], t.retried)
            duration.add_metric([q], _buckets(t.duration_buckets), t.duration_sum_ms / 1000.0)
            wait.add_metric([q], _buckets(t.wait_buckets), t.wait_sum_ms / 1000.0)
        yield from gauges.values()
        yield from (paused, alive, completed, failed, retried, duration, wait)


def _buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    seen = 0
    for bound, count in zip((*(b / 1000.0 for b in BOUNDS_MS), None), counts, strict=True):
        seen += count
        out.append(("+Inf" if bound is None else repr(bound), float(seen)))
    return out


async def read(client: Client, prefix: str, queues: Sequence[str]) -> Snapshot:
    """Everything the metrics say, read from Redis now (also what the OTel gauges report)."""
    stats = await all_stats(client, prefix, queues)
    totals = await history.totals(client, prefix, queues)
    workers = await registry.live_worker_counts(client, prefix, queues)
    return Snapshot(stats, totals, workers)


async def render(client: Client, prefix: str, queues: Sequence[str]) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(await read(client, prefix, queues))
    return generate_latest(reg)
