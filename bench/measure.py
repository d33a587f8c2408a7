"""What a pass measures: the processing rate and CPU per job while a worker drains, idle pickups,
and the server commands per job. One ``PassResult`` per (system, server, run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.procs import cpu_seconds

STAMPS = "bench:stamps"  # the pickup handlers push their start time here
WINDOW_START = 0.05  # processing rate: from 5% done to 100% done (leaves out start-up)
POLL = 0.02


class BenchError(RuntimeError):
    pass


@dataclass
class PassResult:
    system: str
    persistence: str
    run: int
    jobs: int
    serial_jobs: int
    serial_rate: float = 0.0
    bulk_rate: float = 0.0
    bulk_schema_rate: float | None = None
    process_rate: float = 0.0
    worker_cpu_us: float = 0.0
    server_cpu_us: float = 0.0
    pickup_ms: list[float] = field(default_factory=list)
    failed: int = 0
    worker_exit: int | None = None
    loadavg: float = 0.0  # 1-minute load average when the pass started
    server_calls: dict[str, float] = field(default_factory=dict)  # per job, while processing

    def pickup(self, q: float) -> float:
        if not self.pickup_ms:
            return float("nan")
        xs = sorted(self.pickup_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def summary(self) -> dict[str, Any]:
        schema = self.bulk_schema_rate
        return {
            "system": self.system,
            "persistence": self.persistence,
            "run": self.run,
            "jobs": self.jobs,
            "serial_jobs": self.serial_jobs,
            "enqueue_serial_jobs_s": round(self.serial_rate, 1),
            "enqueue_bulk_jobs_s": round(self.bulk_rate, 1),
            "enqueue_bulk_schema_jobs_s": None if schema is None else round(schema, 1),
            "process_jobs_s": round(self.process_rate, 1),
            "worker_cpu_us_per_job": round(self.worker_cpu_us, 1),
            "server_cpu_us_per_job": round(self.server_cpu_us, 1),
            "pickup_p50_ms": round(self.pickup(0.50), 3),
            "pickup_p99_ms": round(self.pickup(0.99), 3),
            "pickup_samples": len(self.pickup_ms),
            "failed": self.failed,
            "worker_exit": self.worker_exit,
            "loadavg_1m_at_start": self.loadavg,
            "server_calls_per_job": self.server_calls,
        }


@dataclass(frozen=True)
class Sample:
    t: float
    done: int
    worker_cpu: float
    server_cpu: float


@dataclass(frozen=True)
class Drain:
    """How to follow one worker's drain: jobs done so far, its CPU seconds, whether it lives."""

    progress: Callable[[], Awaitable[int]]
    worker_cpu: Callable[[], float]
    alive: Callable[[], bool]
    server_pid: int


async def watch_processing(drain: Drain, total: int, timeout: float) -> tuple[float, float, float]:
    """Poll every 20 ms until ``total`` are done; returns (jobs/s, worker us/job, server us/job)
    over the window from WINDOW_START * total done to all done."""
    deadline = time.monotonic() + timeout
    samples: list[Sample] = []
    while True:
        done = await drain.progress()
        now = time.perf_counter()
        samples.append(Sample(now, done, drain.worker_cpu(), cpu_seconds(drain.server_pid)))
        if done >= total:
            break
        if not drain.alive():
            raise BenchError(f"the worker exited with {done} of {total} jobs done")
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {total} jobs done after {timeout:.0f}s")
        await asyncio.sleep(POLL)
    return window_rates(samples, total)


def window_rates(samples: list[Sample], total: int) -> tuple[float, float, float]:
    first = next(s for s in samples if s.done >= max(1, WINDOW_START * total))
    last = samples[-1]
    if last is first or last.done <= first.done:  # tiny runs: use the whole drain
        first = samples[0]
    jobs = max(last.done - first.done, 1)
    elapsed = max(last.t - first.t, 1e-6)
    return (
        jobs / elapsed,
        (last.worker_cpu - first.worker_cpu) * 1e6 / jobs,
        (last.server_cpu - first.server_cpu) * 1e6 / jobs,
    )


async def measure_pickups(
    admin: aioredis.Redis,
    enqueue: Callable[[], Awaitable[Any]],
    finished: Callable[[], Awaitable[int]],
    samples: int,
    budget: float,
) -> list[float]:
    """Enqueue one job into the idle queue, wait for the handler's stamp; ``samples`` times."""
    out: list[float] = []
    deadline = time.monotonic() + budget
    base = await finished()
    for k in range(samples):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)  # the worker is back in its blocking read
        t0 = time.time()
        await enqueue()
        got = await admin.blpop([STAMPS], timeout=5)
        if got is None:
            raise BenchError("an idle pickup took more than 5 s")
        out.append((float(got[1]) - t0) * 1000.0)
        # wait until its outcome is recorded, so the next one finds the worker idle again
        settle = time.monotonic() + 5
        while await finished() < base + k + 1:
            if time.monotonic() > settle:
                raise BenchError("a pickup job did not finish within 5 s")
            await asyncio.sleep(0.002)
    return out


async def command_counts(admin: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (commands run by scripts included)."""
    info = await admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def per_job(counts: dict[str, int], jobs: int, top: int = 12) -> dict[str, float]:
    skip = {"info", "xinfo|groups", "config|resetstat"}  # the benchmark's own polling
    rows = sorted(((c, k) for k, c in counts.items() if k not in skip), reverse=True)[:top]
    out = {k: round(c / jobs, 3) for c, k in rows}
    for k in ("evalsha", "blpop", "xack", "xreadgroup"):  # the round trips, always shown
        if k in counts and k not in out:
            out[k] = round(counts[k] / jobs, 3)
    return out
