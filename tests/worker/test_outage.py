"""Outage-proof leases: a Redis outage longer than the lease, and a fetch whose reply was lost.

- Valkey (AOF everysec) killed with SIGKILL for 6 s while three 8 s jobs run, lease 3 s: after
  the reconnect each worker renews its leases before it fetches, so no job runs twice.
- A fetch that ran on the server but whose reply never arrived leased jobs nobody knows about:
  the worker finds them (each fetch call leases under its own name) and gives them back at once,
  instead of letting them stall.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortexflow.config import load_config
from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import FetchResult
from tests.helpers.jobs import engine_for, make_config, wait_workers_ready
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import Proc
from tests.helpers.project import RECORDER, write_project

# The lease promise holds on the embedded default (unix socket) and over TCP.
pytestmark = pytest.mark.transports


@pytest.mark.slow
def test_a_redis_outage_longer_than_the_lease_runs_no_job_twice(
    tmp_path: Path, workers: Callable[..., Proc], private_server: Callable[..., ServerProcess]
) -> None:
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    try:
        url = server.url
        client = redis.Redis.from_url(url)
        cfg = write_project(
            tmp_path,
            """
            queues:
              long:
                handler: rec:handle
                lease: 3s
                max_stalls: 5
            """,
            RECORDER,
        )
        procs = [workers(cfg, "long", url), workers(cfg, "long", url)]
        wait_workers_ready(client, "long", 2)
        config = load_config(cfg)

        async def add() -> None:
            async with engine_for(url, config.queues["long"]) as e:
                await e.add_bulk(
                    [("n", {"sleep": 8}, JobOptions(job_id=f"o{i}")) for i in range(3)]
                )

        asyncio.run(add())
        wait_for(lambda: client.llen("test:runs") >= 3, 10, message="jobs did not start")
        time.sleep(1.5)  # let the AOF (fsync every second) hold the leases
        server.kill()  # SIGKILL: no AOF flush beyond the last fsync
        time.sleep(6)  # the outage itself, twice the lease
        server.start()
        client = redis.Redis.from_url(url)

        def finished() -> bool:
            done = client.zcard("{cortexflow:long}:completed") + client.zcard(
                "{cortexflow:long}:failed"
            )
            return done == 3

        wait_for(finished, 60, 0.1, message=lambda: str([p.log() for p in procs]))
        runs = Counter(json.loads(x)["id"] for x in client.lrange("test:runs", 0, -1))
        assert runs == {"o0": 1, "o1": 1, "o2": 1}, (runs, [p.log() for p in procs])
        assert client.zcard("{cortexflow:long}:completed") == 3
        client.close()
    finally:
        server.kill()


def test_jobs_leased_by_a_fetch_whose_reply_was_lost_are_given_back_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    """max_stalls: 0, so a single stall would fail a job: none may stall."""
    from cortexflow.worker.queue_worker import QueueWorker

    queue = QueueConfig(name="lossy", handler="x:y", concurrency=2, lease=3.0, max_stalls=0)
    config = make_config(tmp_path / "queues.yaml", queue)
    ran: list[str] = []

    async def handler(data: Any, job: Any) -> None:
        ran.append(job.id)

    async def main() -> None:
        worker = QueueWorker(config, "lossy", redis_url, handler=handler)
        await worker.start()
        try:
            assert worker.broker is not None
            consumer = worker.broker.consumer
            real = consumer.fetch
            lost: list[int] = []

            async def lossy(n: int) -> FetchResult:
                result = await real(n)
                if result.jobs and not lost:  # ran on the server; the reply never arrives
                    lost.append(len(result.jobs))
                    raise RedisTimeoutError("Timeout reading from socket (injected)")
                return result

            consumer.fetch = lossy  # type: ignore[method-assign]
            async with engine_for(redis_url, queue) as e:
                started = time.monotonic()
                await e.add_bulk([("n", {}, JobOptions(job_id=f"l{i}")) for i in range(4)])

                async def done() -> bool:
                    s = await e.stats()
                    return bool(s["completed"] + s["failed"] == 4)

                await wait_for_async(done, 20, message="all four finished")
                took = time.monotonic() - started
                s = await e.stats()
                assert (s["completed"], s["failed"]) == (4, 0), s
                assert lost == [2]
                assert took < queue.lease, f"{took:.1f}s: the lost jobs waited for their lease"
                stalls = [(await e.get_job(f"l{i}")).stalls for i in range(4)]  # type: ignore[union-attr]
                assert stalls == [0, 0, 0, 0]
        finally:
            await worker.stop(2)

    asyncio.run(main())
    assert sorted(ran) == ["l0", "l1", "l2", "l3"]
