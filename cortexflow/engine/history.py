"""Metrics history, as the finish script keeps it.

Per queue and per minute (epoch minute of the server's clock, kept 25 h) a hash
``<metrics>:<minute>``, and all-time totals in ``<metrics>:total``, with the fields:

- ``c``, ``r``, ``f``: runs completed, failed and retried, failed for good;
- ``ds`` / ``ws``: sums (ms) of run durations (start -> outcome) and of waits (enqueue, or the
  due time of a delayed job, -> start of the run);
- ``d1`` .. ``d15`` / ``w1`` .. ``w15``: how many fell in each bucket of ``BOUNDS_MS``
  (bucket i holds values <= BOUNDS_MS[i-1]; bucket 15 the rest).

A wait is measured for the run that finished: for a retried job it includes earlier runs and
their backoff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cortexflow.engine.connection import Client
from cortexflow.engine.keys import QueueKeys

# Upper bounds (ms) of the histogram buckets; finish.lua spells the same list.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
KEEP_MINUTES = 24 * 60


@dataclass(frozen=True)
class Summary:
    """Counts and duration/wait distributions over some span (a minute, a day, all time)."""

    completed: int
    failed: int
    retried: int
    duration_sum_ms: int
    wait_sum_ms: int
    duration_buckets: tuple[int, ...]  # per bucket, not cumulative; len(BOUNDS_MS) + 1
    wait_buckets: tuple[int, ...]

    @property
    def runs(self) -> int:
        return self.completed + self.failed + self.retried

    @classmethod
    def from_hash(cls, h: Mapping[Any, Any]) -> Summary:
        f = {_text(k): int(v) for k, v in h.items()}
        n = len(BOUNDS_MS) + 1
        return cls(
            completed=f.get("c", 0),
            failed=f.get("f", 0),
            retried=f.get("r", 0),
            duration_sum_ms=f.get("ds", 0),
            wait_sum_ms=f.get("ws", 0),
            duration_buckets=tuple(f.get(f"d{i}", 0) for i in range(1, n + 1)),
            wait_buckets=tuple(f.get(f"w{i}", 0) for i in range(1, n + 1)),
        )

    def to_dict(self) -> dict[str, Any]:
        runs = self.runs
        return {
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "duration": _stats(self.duration_buckets, self.duration_sum_ms, runs),
            "wait": _stats(self.wait_buckets, self.wait_sum_ms, runs),
        }


def merge(summaries: Sequence[Summary]) -> Summary:
    n = len(BOUNDS_MS) + 1
    return Summary(
        completed=sum(s.completed for s in summaries),
        failed=sum(s.failed for s in summaries),
        retried=sum(s.retried for s in summaries),
        duration_sum_ms=sum(s.duration_sum_ms for s in summaries),
        wait_sum_ms=sum(s.wait_sum_ms for s in summaries),
        duration_buckets=tuple(sum(s.duration_buckets[i] for s in summaries) for i in range(n)),
        wait_buckets=tuple(sum(s.wait_buckets[i] for s in summaries) for i in range(n)),
    )


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile ``q``; None without samples, and the
    last finite bound for values beyond it."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        seen += count
        if seen >= rank and count:
            return float(BOUNDS_MS[min(i, len(BOUNDS_MS) - 1)])
    return float(BOUNDS_MS[-1])


def _stats(buckets: Sequence[int], total_ms: int, runs: int) -> dict[str, Any]:
    count = sum(buckets)
    return {
        "count": count,
        "avgMs": round(total_ms / count, 1) if count else None,
        "p50Ms": quantile(buckets, 0.5),
        "p95Ms": quantile(buckets, 0.95),
        "p99Ms": quantile(buckets, 0.99),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def server_minute(client: Client) -> int:
    """The current epoch minute of the server's clock (the finish script's clock)."""
    seconds, _micro = await client.time()
    return int(seconds) // 60


async def per_minute(
    client: Client, prefix: str, queue: str, minutes: int = 60
) -> list[tuple[int, Summary]]:
    """The last ``minutes`` minutes (the current one included), oldest first, as
    (epoch seconds of the minute's start, summary); minutes without runs are zeros."""
    minutes = max(1, min(minutes, KEEP_MINUTES))
    now = await server_minute(client)
    keys = QueueKeys(prefix, queue)
    span = range(now - minutes + 1, now + 1)
    async with client.pipeline(transaction=False) as pipe:
        for m in span:
            pipe.hgetall(keys.metrics_minute(m))
        raw = await pipe.execute()
    return [(m * 60, Summary.from_hash(h)) for m, h in zip(span, raw, strict=True)]


async def totals(client: Client, prefix: str, queues: Sequence[str]) -> dict[str, Summary]:
    """All-time summaries of several queues, one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.hgetall(QueueKeys(prefix, q).metrics_total)
        raw = await pipe.execute()
    return {q: Summary.from_hash(h) for q, h in zip(queues, raw, strict=True)}


async def failed_for_good(client: Client, prefix: str, queues: Sequence[str]) -> dict[str, int]:
    """Jobs failed for good, all time, of several queues, one round trip: the queue's own count
    (``failed_total`` of its meta hash), which the finish script and the stall recovery in the
    fetch script both increment, so unlike the metrics hashes' ``f`` it includes the jobs
    failed by stalling (their worker died)."""
    async with client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.hget(QueueKeys(prefix, q).meta, "failed_total")
        raw = await pipe.execute()
    return {q: int(v or 0) for q, v in zip(queues, raw, strict=True)}
