"""Job semantics with a real worker (taskiq Receiver + engine) in this process."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from cortexflow.backoff import backoff_bounds
from cortexflow.config.model import Backoff, QueueConfig, Retention, RetentionRule
from cortexflow.engine.jobs import JobOptions
from cortexflow.errors import UnrecoverableError
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))


def test_priority_higher_first_fifo_within(redis_url: str, tmp_path: Path) -> None:
    order: list[tuple[int, int]] = []

    async def handler(data: Any) -> None:
        order.append((data["p"], data["i"]))

    async def main() -> None:
        queue = QueueConfig(name="prio", handler="x:y", concurrency=1, retention=KEEP_ALL)
        rng = random.Random(7)
        jobs = [("n", {"p": rng.randint(0, 5) * 1000, "i": i}, None) for i in range(1000)]
        jobs = [(n, d, JobOptions(priority=d["p"])) for n, d, _ in jobs]
        async with engine_for(redis_url, queue) as e:
            await e.pause()
            await e.add_bulk(jobs[:500])
            for j in jobs[500:]:
                await e.add(*j)
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "prio", redis_url, handler
            ):
                await asyncio.sleep(0.3)  # a window in which nothing may start (no condition)
                assert order == []  # paused: nothing starts
                await e.resume()
                await wait_for_async(lambda: _count(e, "completed", 1000), 30, message="all done")

    asyncio.run(main())
    assert len(order) == 1000
    prios = [p for p, _ in order]
    assert prios == sorted(prios, reverse=True), "higher priority must run first"
    for p in set(prios):
        within = [i for q, i in order if q == p]
        assert within == sorted(within), f"FIFO within priority {p}"


async def _count(e: Any, state: str, n: int) -> bool:
    return bool((await e.stats())[state] >= n)


def test_delayed_jobs_never_run_early(redis_url: str, tmp_path: Path) -> None:
    started: dict[int, float] = {}

    async def handler(data: Any) -> None:
        started[data["i"]] = time.time()

    async def main() -> None:
        queue = QueueConfig(name="later", handler="x:y", concurrency=20, retention=KEEP_ALL)
        rng = random.Random(3)
        delays = [rng.uniform(0, 3) for _ in range(200)]
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "later", redis_url, handler
            ):
                t0 = time.time()
                await e.add_bulk(
                    [("n", {"i": i}, JobOptions(delay=d)) for i, d in enumerate(delays)]
                )
                await wait_for_async(
                    lambda: _count(e, "completed", 200), 20, message="all delayed jobs ran"
                )
        for i, d in enumerate(delays):
            early = (t0 + d) - started[i]
            # Redis's clock and ours are the same machine's; allow 2 ms of rounding (ms scores).
            # (How late they run is measured by bench/timings.py.)
            assert early <= 0.002, f"job {i} ran {early * 1000:.1f} ms early"

    asyncio.run(main())


def test_backoff_gaps_follow_the_formula(redis_url: str, tmp_path: Path) -> None:
    runs: list[float] = []

    async def flaky(data: Any, job: Any) -> str:
        runs.append(time.monotonic())
        if job.attempt <= 3:
            raise ConnectionError(f"transient {job.attempt}")
        return "ok"

    async def main() -> None:
        backoff = Backoff(type="exponential", delay=0.2, max=0.5, jitter=0.5)
        queue = QueueConfig(name="flaky", handler="x:y", attempts=5, backoff=backoff)
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "flaky", redis_url, flaky
            ):
                await e.add("n", {}, JobOptions(job_id="j"))
                job = await e.wait_finished("j", 20)
        assert job is not None and job.state == "completed" and job.attempts_made == 4
        assert len(runs) == 4
        for k in (1, 2, 3):
            low, high = backoff_bounds("exponential", 0.2, 0.5, 0.5, k)
            gap = runs[k] - runs[k - 1]
            # Never early; late by at most scheduling noise on a loaded machine (the worker runs
            # in this test's process, beside 3 other test processes on 2 cores).
            assert low - 0.005 <= gap <= high + 1.5, f"gap {k}: {gap:.3f}s not in [{low}, {high}]"

    asyncio.run(main())


def test_unrecoverable_fails_at_once_and_exhausted_goes_to_dead_letter(
    redis_url: str, tmp_path: Path
) -> None:
    calls: dict[str, int] = {}

    async def handler(data: Any, job: Any) -> None:
        calls[job.id] = calls.get(job.id, 0) + 1
        if data.get("fatal"):
            raise UnrecoverableError("bad signature")
        raise RuntimeError("always")

    async def main() -> None:
        queue = QueueConfig(
            name="work",
            handler="x:y",
            attempts=3,
            backoff=Backoff(type="fixed", delay=0.05),
            dead_letter="dead",
        )
        dead = QueueConfig(name="dead", handler="x:y")
        cfg = make_config(tmp_path / "q.yaml", queue, dead)
        async with engine_for(redis_url, queue) as e, engine_for(redis_url, dead) as d:
            async with inproc_worker(cfg, "work", redis_url, handler):
                await e.add("n", {"fatal": True}, JobOptions(job_id="u"))
                await e.add("n", {"x": 1}, JobOptions(job_id="r"))
                u = await e.wait_finished("u", 10)
                r = await e.wait_finished("r", 10)
                await wait_for_async(
                    lambda: _count(d, "waiting", 2),
                    10,
                    message="both copied to the dead-letter queue",
                )
            assert u is not None and u.state == "failed" and u.attempts_made == 1
            assert u.error == "UnrecoverableError: bad signature"
            assert r is not None and r.state == "failed" and r.attempts_made == 3
            assert calls == {"u": 1, "r": 3}
            letter = await d.get_job("r")
            assert letter is not None
            assert letter.data["queue"] == "work" and letter.data["data"] == {"x": 1}
            assert (
                letter.data["error"] == "RuntimeError: always" and letter.data["attemptsMade"] == 3
            )

    asyncio.run(main())


def test_timeout_fails_the_attempt_and_retries(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any, job: Any) -> str:
        if job.attempt == 1:
            await asyncio.sleep(10)
        return "second time"

    async def main() -> None:
        queue = QueueConfig(
            name="slow",
            handler="x:y",
            timeout=0.3,
            attempts=2,
            backoff=Backoff(type="fixed", delay=0.01),
        )
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "slow", redis_url, handler
            ):
                t0 = time.monotonic()
                await e.add("n", {}, JobOptions(job_id="t"))
                job = await e.wait_finished("t", 10)
                assert time.monotonic() - t0 < 5
        assert job is not None and job.state == "completed" and job.result == "second time"
        assert job.attempts_made == 2 and "timeout of 0.3s" in (job.error or "")

    asyncio.run(main())


def test_sync_handlers_run_in_threads(redis_url: str, tmp_path: Path) -> None:
    import threading

    main_thread = threading.get_ident()

    def handler(data: Any) -> dict[str, Any]:
        time.sleep(0.01)
        return {"thread": threading.get_ident() != main_thread, "sum": sum(data["xs"])}

    async def main() -> None:
        queue = QueueConfig(name="sync", handler="x:y")
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "sync", redis_url, handler
            ):
                await e.add("n", {"xs": [1, 2, 3]}, JobOptions(job_id="s"))
                job = await e.wait_finished("s", 10)
        assert job is not None and job.result == {"thread": True, "sum": 6}

    asyncio.run(main())


def test_retention_keeps_at_most_count_and_memory_flat(
    redis_url: str, tmp_path: Path, redis_client: Any
) -> None:
    async def noop(data: Any) -> None:
        return None

    async def main() -> list[int]:
        queue = QueueConfig(
            name="ret",
            handler="x:y",
            concurrency=20,
            retention=Retention(RetentionRule(None, 100), RetentionRule(None, 100)),
        )
        memory = []
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "ret", redis_url, noop
            ):
                for batch in range(4):
                    await e.add_bulk([("n", {"i": i, "pad": "x" * 200}, None) for i in range(5000)])
                    await wait_for_async(lambda b=batch: _total(e, (b + 1) * 5000), 60)
                    memory.append(int(redis_client.info("memory")["used_memory"]))
                s = await e.stats()
                assert s["completed"] == 100 and s["waiting"] == 0
        return memory

    memory = asyncio.run(main())
    # 5,000 more retained jobs of ~300 bytes would add > 1.5 MB each batch; flat means < 300 kB.
    assert max(memory[1:]) - memory[1] < 300_000, memory
    assert redis_client.dbsize() < 120


async def _total(e: Any, n: int) -> bool:
    raw = await e.client.hget(e.keys.meta, "completed_total")
    return int(raw or 0) >= n


def test_stats_are_exact_under_load(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any) -> None:
        await asyncio.sleep(random.uniform(0, 0.01))
        if data["i"] % 10 == 0:
            raise ValueError("some fail")

    async def main() -> None:
        queue = QueueConfig(
            name="load", handler="x:y", concurrency=16, attempts=1, retention=KEEP_ALL
        )
        async with engine_for(redis_url, queue) as e:
            await e.add_bulk(
                [
                    ("n", {"i": i}, JobOptions(delay=0.2 if i % 7 == 0 else None))
                    for i in range(1500)
                ]
            )
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "load", redis_url, handler
            ):
                samples = 0
                while True:
                    s = await e.stats()
                    total = s["waiting"] + s["active"] + s["completed"] + s["failed"] + s["delayed"]
                    assert total == 1500, s
                    samples += 1
                    if s["completed"] + s["failed"] == 1500:
                        break
                    await asyncio.sleep(0.005)
                assert s["failed"] == 150 and s["completed"] == 1350 and samples > 5

    asyncio.run(main())


def test_handlers_add_follow_up_jobs_to_other_queues(redis_url: str, tmp_path: Path) -> None:
    async def first(data: Any, job: Any) -> str:
        return await job.add_job("second", "next", {"from": job.id}, priority=3, delay=50)

    async def main() -> None:
        a = QueueConfig(name="first", handler="x:y")
        b = QueueConfig(name="second", handler="x:y")
        cfg = make_config(tmp_path / "q.yaml", a, b)
        async with engine_for(redis_url, a) as e, engine_for(redis_url, b) as f:
            async with inproc_worker(cfg, "first", redis_url, first):
                await e.add("n", {}, JobOptions(job_id="origin"))
                done = await e.wait_finished("origin", 10)
            assert done is not None and done.state == "completed"
            follow = await f.get_job(done.result)
            assert follow is not None and follow.data == {"from": "origin"}
            assert follow.priority == 3 and follow.delay == 0.05

    asyncio.run(main())


def test_handlers_see_their_queue_settings(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any, job: Any) -> dict[str, Any]:
        return dict(job.settings)

    async def main() -> None:
        queue = QueueConfig(name="set", handler="x:y", settings={"orchestrator": "m:Bot"})
        async with engine_for(redis_url, queue) as e:
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "set", redis_url, handler
            ):
                await e.add("n", {}, JobOptions(job_id="s"))
                job = await e.wait_finished("s", 10)
        assert job is not None and job.result == {"orchestrator": "m:Bot"}

    asyncio.run(main())
