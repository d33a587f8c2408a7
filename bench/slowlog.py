"""How long the engine's scripts hold the server with a big queue, measured with SLOWLOG.

    .venv/bin/python bench/slowlog.py                # 1,000,000 jobs
    .venv/bin/python bench/slowlog.py --jobs 200000

Starts a private valkey-server (appendonly off), fills one queue with N waiting jobs (add_bulk,
1,000 per call) and N/10 delayed ones, then runs each operation below and prints, per
operation, its script calls (EVALSHA: count and mean time from INFO commandstats) and, from
SLOWLOG (every call over 1 ms), how many took over 1 ms and 10 ms and the slowest. SLOWLOG
measures wall time inside the server, so on a busy machine a call that was descheduled mid-way
counts the wait too.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine


async def _calls(client: Any) -> tuple[int, float, list[float]]:
    """Script calls (EVALSHA) since the last reset: (count, total ms, durations in ms of those
    over 1 ms from SLOWLOG); then reset both."""
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    entries = await client.slowlog_get(100_000)
    await client.slowlog_reset()
    await client.config_resetstat()
    slow = [e["duration"] / 1000.0 for e in entries if e["command"].startswith(b"EVALSHA")]
    return int(stats.get("calls", 0)), int(stats.get("usec", 0)) / 1000.0, slow


async def run(jobs: int, url: str) -> None:
    client = connect(url)
    q = QueueConfig(name="big", handler="x:y")
    engine = QueueEngine(client, q, "cortexflow")

    async def fill(n: int, opts: JobOptions | None = None) -> None:
        for start in range(0, n, 1000):
            await engine.add_bulk([("n", {"i": start + i}, opts) for i in range(1000)])

    t0 = time.monotonic()
    await fill(jobs)
    await fill(jobs // 10, JobOptions(delay=3600.0))
    print(f"added {jobs:,} waiting + {jobs // 10:,} delayed in {time.monotonic() - t0:.1f}s")
    # Every call over 1 ms (0 would also log the commands scripts run, a million entries).
    await client.config_set("slowlog-log-slower-than", 1000)
    await client.config_set("slowlog-max-len", 100_000)
    await client.slowlog_reset()
    await client.config_resetstat()

    async def fetch_finish() -> None:
        consumer = QueueConsumer(engine, "bench", client)
        got = (await consumer.fetch(10)).jobs
        await consumer.finish(
            [Outcome(OutcomeKind.COMPLETED, f.job.id, f.token, result="1") for f in got]
        )

    async def refill_and_obliterate() -> None:
        await fill(jobs // 10)
        await client.slowlog_reset()
        await client.config_resetstat()
        await engine.obliterate(force=True)

    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("stats", engine.stats),
        ("fetch 10 + finish", fetch_finish),
        ("clean delayed, half", lambda: engine.clean(0, jobs // 20, "delayed")),
        (
            "clean waiting, grace 1h: walks all, removes none",
            lambda: engine.clean(3600, 0, "waiting"),
        ),
        ("clean waiting, grace 0: 200,000 of them", lambda: engine.clean(0, 200_000, "waiting")),
        ("drain (waiting + delayed): the rest", lambda: engine.drain(delayed=True)),
        (f"obliterate ({jobs // 10:,} jobs)", refill_and_obliterate),
    ]
    print(
        f"| operation ({jobs:,} jobs in the queue) | wall | script calls | mean | calls > 1 ms "
        "| calls > 10 ms | slowest |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, step in steps:
        t = time.monotonic()
        await step()
        wall = time.monotonic() - t
        count, total, slow = await _calls(client)
        print(
            f"| {name} | {wall:.2f} s | {count:,} | {total / max(count, 1):.2f} ms | {len(slow)} "
            f"| {sum(d > 10 for d in slow)} | {max(slow, default=0.0):.2f} ms |"
        )
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), appendonly=False)
        server.start()
        try:
            asyncio.run(run(args.jobs, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
