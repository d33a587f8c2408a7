"""Engine guarantees with real `cortexflow worker` processes, real signals and a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for, wait_workers_ready
from tests.helpers.poll import wait_for_async
from tests.helpers.project import RECORDER, write_project


def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange("test:runs", 0, -1)]


@pytest.mark.slow
def test_rate_limit_holds_across_three_processes(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          limited:
            handler: rec:handle
            concurrency: 2
            rate_limit: {max: 10, duration: 1s}
            retention: {completed: {count: 1000}}
    """,
        RECORDER,
    )
    for _ in range(3):
        workers(cfg, "limited", redis_url)
    wait_workers_ready(redis_client, "limited", 3)
    config = load_config(cfg)

    async def main() -> list[float]:
        async with engine_for(redis_url, config.queues["limited"]) as e:
            # 3 workers x 2 slots / 0.4 s = 15 starts/s of capacity: the limit of 10 binds, and
            # no single worker can take every start (it can start at most 5 a second).
            await e.add_bulk([("n", {"sleep": 0.4}, None) for _ in range(45)])
            await wait_for_async(lambda: _done(e, 45), 30, message="45 jobs through the limiter")
            jobs = await e.list_jobs("completed", 0, 100)
        return sorted(j.processed_at for j in jobs if j.processed_at)

    starts = asyncio.run(main())
    assert len(starts) == 45
    for i, t in enumerate(starts):
        in_window = [s for s in starts[i:] if s < t + 1.0]
        assert len(in_window) <= 10, f"{len(in_window)} starts within 1 s of {t}"
    # Several processes took part, so the limit was shared, not per process.
    assert len({r["pid"] for r in _runs(redis_client)}) >= 2
    # And it bound: 45 starts at <= 10/s need at least 3.5 s (4 windows).
    assert starts[-1] - starts[0] >= 3.0


async def _done(e: Any, n: int) -> bool:
    s = await e.stats()
    return bool(s["completed"] + s["failed"] >= n)


@pytest.mark.transports
def test_kill9_jobs_recovered_after_the_lease_without_new_traffic(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          crashy:
            handler: rec:handle
            concurrency: 20
            lease: 2s
    """,
        RECORDER,
    )
    config = load_config(cfg)
    victim = workers(cfg, "crashy", redis_url)
    wait_workers_ready(redis_client, "crashy", 1)

    async def main() -> None:
        async with engine_for(redis_url, config.queues["crashy"]) as e:
            # The victim sleeps 30 s in each job; the survivor finishes the reruns at once.
            await e.add_bulk([("n", {"sleep": 30}, JobOptions(job_id=f"j{i}")) for i in range(20)])
            await wait_for_async(lambda: _active(e, 20), 15, message="20 running on the victim")
            survivor = workers(cfg, "crashy", redis_url)
            wait_workers_ready(redis_client, "crashy", 2)
            victim.kill()
            killed_at = time.time()
            # Reruns must not sleep.
            redis_client.set("test:fast", "1")
            await wait_for_async(
                lambda: _done(e, 20), 20, message="all 20 completed by the survivor"
            )
            reruns = [r for r in _runs(redis_client) if r["pid"] == survivor.pid]
            assert len(reruns) == 20
            # Not before the victim's leases (2 s, renewed until the kill) could expire.
            assert min(r["t"] for r in reruns) >= killed_at + 0.5
            jobs = [await e.get_job(f"j{i}") for i in range(20)]
            assert all(j is not None and j.stalls == 1 and j.state == "completed" for j in jobs)

    asyncio.run(main())


async def _started(client: redis.Redis, n: int) -> bool:
    return bool(client.llen("test:runs") >= n)


async def _active(e: Any, n: int) -> bool:
    return bool((await e.stats())["active"] >= n)


@pytest.mark.transports
def test_heartbeat_keeps_a_long_job_from_running_twice(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          long:
            handler: rec:handle
            lease: 2s
    """,
        RECORDER,
    )
    config = load_config(cfg)
    workers(cfg, "long", redis_url)
    workers(cfg, "long", redis_url)
    wait_workers_ready(redis_client, "long", 2)

    async def main() -> None:
        async with engine_for(redis_url, config.queues["long"]) as e:
            # 3.5 leases: without its renewals the other worker would take it over
            await e.add("n", {"sleep": 7}, JobOptions(job_id="long"))
            job = await e.wait_finished("long", 30)
            assert job is not None and job.state == "completed" and job.stalls == 0

    asyncio.run(main())
    assert redis_client.hget("test:count", "long") == b"1"


def test_pause_stops_starts_on_every_worker(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          pausable:
            handler: rec:handle
    """,
        RECORDER,
    )
    config = load_config(cfg)
    workers(cfg, "pausable", redis_url)
    workers(cfg, "pausable", redis_url)
    wait_workers_ready(redis_client, "pausable", 2)

    async def main() -> None:
        async with engine_for(redis_url, config.queues["pausable"]) as e:
            await e.pause()
            await e.add_bulk([("n", {}, None) for _ in range(20)])
            # Something that must not happen has no condition to wait for: watch for 1.5 s.
            await asyncio.sleep(1.5)
            s = await e.stats()
            assert (s["waiting"], s["active"], s["completed"], s["paused"]) == (20, 0, 0, True)
            await e.resume()
            await wait_for_async(lambda: _done(e, 20), 10, message="all run after resume")

    asyncio.run(main())


@pytest.mark.slow
def test_chaos_sigkill_workers_loses_nothing(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          chaos:
            handler: rec:handle
            concurrency: 8
            lease: 2s
            max_stalls: 100
            retention: {completed: {count: 10000}, failed: {count: 10000}}
    """,
        RECORDER,
    )
    config = load_config(cfg)
    live = [workers(cfg, "chaos", redis_url), workers(cfg, "chaos", redis_url)]
    wait_workers_ready(redis_client, "chaos", 2)
    n = 5000
    kills = 0

    async def main() -> None:
        nonlocal kills
        async with engine_for(redis_url, config.queues["chaos"]) as e:
            for start in range(0, n, 1000):
                await e.add_bulk(
                    [
                        ("n", {"sleep": [0.05, 0.15]}, JobOptions(job_id=f"c{i}"))
                        for i in range(start, start + 1000)
                    ]
                )
            rng = random.Random(11)
            end = time.monotonic() + 30
            while time.monotonic() < end:
                await asyncio.sleep(2)
                victim = live.pop(rng.randrange(len(live)))
                victim.kill()
                kills += 1
                live.append(workers(cfg, "chaos", redis_url))
            await wait_for_async(lambda: _done(e, n), 120, message="every job finished")
            s = await e.stats()
            assert s["completed"] + s["failed"] == n and s["waiting"] == s["active"] == 0

    asyncio.run(main())
    counts = Counter({k.decode(): int(v) for k, v in redis_client.hgetall("test:count").items()})
    assert set(counts) == {f"c{i}" for i in range(n)}, "some jobs never ran"
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nchaos: {kills} kills, {duplicates} duplicate runs of {n} jobs")
    assert duplicates <= kills * 8, "more reruns than jobs in flight at the kills"


@pytest.mark.slow
@pytest.mark.transports
def test_workers_survive_a_redis_restart_and_lose_no_acknowledged_job(
    tmp_path: Path, workers: Any, private_server: Any
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
              durable:
                handler: rec:handle
                retention: {completed: {count: 10000}}
        """,
            RECORDER,
        )
        config = load_config(cfg)
        procs = [workers(cfg, "durable", url), workers(cfg, "durable", url)]
        wait_workers_ready(client, "durable", 2)
        acknowledged: list[str] = []

        async def main() -> None:
            async with engine_for(url, config.queues["durable"]) as e:
                for i in range(600):
                    if i == 200:
                        server.stop()  # SIGTERM: the AOF is flushed, then a fresh start
                        server.start()
                    with contextlib.suppress(redis.RedisError):
                        acknowledged.append(
                            await e.add("n", {"sleep": 0.005}, JobOptions(job_id=f"d{i}"))
                        )
                    await asyncio.sleep(0.003)
                await wait_for_async(
                    lambda: _done(e, len(acknowledged)), 60, message="all acknowledged jobs done"
                )
                done = {j.id for j in await e.list_jobs("completed", 0, 1000)}
                assert set(acknowledged) <= done

        asyncio.run(main())
        assert len(acknowledged) >= 590
        assert all(p.alive() for p in procs), (
            "a worker died with the server instead of reconnecting"
        )
        client.close()
    finally:
        server.stop()


@pytest.mark.transports
def test_sigterm_finishes_running_jobs_then_exits_0(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        stop_timeout: 30s
        queues:
          graceful:
            handler: rec:handle
            concurrency: 5
    """,
        RECORDER,
    )
    config = load_config(cfg)
    w = workers(cfg, "graceful", redis_url)
    wait_workers_ready(redis_client, "graceful", 1)

    async def main() -> None:
        async with engine_for(redis_url, config.queues["graceful"]) as e:
            # 5 s jobs: the SIGTERM must land while the first 5 still run (on a loaded machine
            # their starts spread over a second or more); a stop that waited out stop_timeout
            # (30 s) or started the other 3 would take far longer than 15 s.
            await e.add_bulk([("n", {"sleep": 5}, JobOptions(job_id=f"g{i}")) for i in range(8)])
            # Running = the handler started (a leased job not yet started is given back on stop).
            await wait_for_async(lambda: _started(redis_client, 5), 10, message="5 running")
            t0 = time.monotonic()
            code = await asyncio.to_thread(w.terminate, 40)
            took = time.monotonic() - t0
            assert code == 0 and took < 15, (code, took, w.log())
            s = await e.stats()
            # The 5 running finished; the 3 never started are still waiting, untouched.
            assert (s["completed"], s["waiting"], s["active"]) == (5, 3, 0), s
            assert all(j.attempts_made == 0 for j in await e.list_jobs("waiting"))

    asyncio.run(main())


@pytest.mark.transports
def test_stop_timeout_gives_unfinished_jobs_back_to_waiting(
    tmp_path: Path, redis_url: str, redis_client: Any, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        stop_timeout: 1s
        queues:
          impatient:
            handler: rec:handle
    """,
        RECORDER,
    )
    config = load_config(cfg)
    w = workers(cfg, "impatient", redis_url)
    wait_workers_ready(redis_client, "impatient", 1)

    async def main() -> None:
        async with engine_for(redis_url, config.queues["impatient"]) as e:
            await e.add_bulk([("n", {"sleep": 60}, JobOptions(job_id=f"s{i}")) for i in range(4)])
            await wait_for_async(lambda: _started(redis_client, 4), 10, message="4 running")
            t0 = time.monotonic()
            await asyncio.to_thread(w.terminate, 15)
            assert time.monotonic() - t0 < 10  # stop_timeout 1 s, not the jobs' 60 s
            s = await e.stats()
            assert (s["waiting"], s["active"]) == (4, 0), s
            # Given back, not stalled: no attempt and no stall counted against them.
            assert all(j.stalls == 0 and j.attempts_made == 0 for j in await e.list_jobs("waiting"))

    asyncio.run(main())


def test_handler_import_error_exits_with_the_config_code(
    tmp_path: Path, redis_url: str, workers: Any
) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          broken:
            handler: exploding:handle
    """,
        RECORDER,
    )
    (tmp_path / "exploding.py").write_text("raise RuntimeError('bad import')\n")
    w = workers(cfg, "broken", redis_url)
    assert w.proc.wait(30) == 78
    assert "bad import" in w.log() and "Traceback" not in w.log()


def test_stalled_too_often_fails_and_is_dead_lettered(redis_url: str) -> None:
    from cortexflow.config.model import QueueConfig
    from cortexflow.engine.consumer import QueueConsumer

    async def main() -> None:
        q = QueueConfig(name="fragile", handler="x:y", lease=0.2, max_stalls=1, dead_letter="dlq")
        dlq = QueueConfig(name="dlq", handler="x:y")
        async with engine_for(redis_url, q) as e, engine_for(redis_url, dlq) as d:
            await e.add("n", {"v": 1}, JobOptions(job_id="f"))
            c1 = QueueConsumer(e, "w1", e.client)
            assert len((await c1.fetch(1)).jobs) == 1  # leased, then its worker "dies"

            async def leased_again() -> list[Any]:
                # Nothing to fetch until the lease expires: stall 1 -> waiting -> leased again.
                return (await c1.fetch(1)).jobs

            again = await wait_for_async(leased_again, 10, message="the stalled job leased again")
            assert [f.job.stalls for f in again] == [1]

            async def failed() -> bool:
                # Stall 2 > max_stalls 1: once this lease expires the job fails, never leased again.
                assert (await c1.fetch(1)).jobs == []
                failed = await e.get_job("f")
                return failed is not None and failed.state == "failed"

            await wait_for_async(failed, 10, message="the job failed at its second stall")
            job = await e.get_job("f")
            assert (
                job is not None and job.state == "failed" and "stalled 2 times" in (job.error or "")
            )
            assert await c1.copy_dead_letters(d) == 1
            letter = await d.get_job("f")
            assert letter is not None and letter.data["data"] == {"v": 1}

    asyncio.run(main())
