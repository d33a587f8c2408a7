"""Scripts that check, then write; text Redis and cjson accept; bounded calls; odd data.

Each test drives the real engine against the session's Valkey, most through a real worker
(taskiq Receiver + broker) in this process.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.config.model import QueueConfig, Retention, RetentionRule
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.errors import PayloadError, UsageError
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))
# A file name read with surrogateescape: byte 0xff becomes the lone surrogate U+DCFF.
ODD = b"report-\xff.csv".decode("utf-8", "surrogateescape")


async def _stats(e: Any) -> dict[str, Any]:
    return dict(await e.stats())


# -- case 1: an error text that is not valid UTF-8 -------------------------------------------


def test_error_text_with_a_lone_surrogate_fails_the_job_cleanly(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> Any:
        if data["odd"]:
            raise OSError("cannot open " + ODD)
        return {"name": ODD}  # a result with one too

    async def main() -> None:
        q = QueueConfig(name="odd", handler="x:y", attempts=1, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk(
                [("n", {"odd": i % 2 == 0}, JobOptions(job_id=f"j{i}")) for i in range(10)]
            )
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "odd", redis_url, handler
            ):
                await wait_for_async(
                    lambda: _done(e, 5, 5), 20, message="5 failed and 5 completed, none lost"
                )
            job = await e.get_job("j0")
            assert job is not None and job.state == "failed"
            assert "cannot open report-\\udcff.csv" in (job.error or "")
            assert "OSError" in (job.stacktrace or "")
            ok = await e.get_job("j1")
            assert ok is not None and ok.result == {"name": "report-\ufffd.csv"}
            assert (await _stats(e))["active"] == 0

    asyncio.run(main())


async def _done(e: Any, failed: int, completed: int) -> bool:
    s = await _stats(e)
    return bool(s["failed"] == failed and s["completed"] == completed)


def test_a_bad_finish_argument_writes_nothing(redis_url: str) -> None:
    """A finish call that cannot be decoded errors before its first write: the job stays
    active under its lease, attempts untouched."""

    async def main() -> None:
        q = QueueConfig(name="strict", handler="x:y")
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="a"))
            c = QueueConsumer(e, "w", e.client)
            (leased,) = (await c.fetch(1)).jobs
            k = e.keys
            good = json.dumps(["c", "a", leased.token, "1", "", "", 0, -1, 0])
            keys = [k.active, k.wait, k.delayed, k.completed, k.failed, k.meta, k.marker]
            with pytest.raises(redis.ResponseError):
                await e.scripts.finish(
                    keys=[*keys, k.dlq_outbox],
                    args=[k.job_prefix, -1, -1, -1, -1, good, '["f", "a", "\\udcff"]'],
                )
            job = await e.get_job("a")
            assert job is not None and job.state == "active" and job.attempts_made == 0
            assert await e.client.zscore(k.active, "a") is not None

    asyncio.run(main())


def test_retry_and_promote_of_a_job_without_its_hash_leave_no_half_move(redis_url: str) -> None:
    async def main() -> None:
        q = QueueConfig(name="holes", handler="x:y", retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            k = e.keys
            # Ids whose job hash is gone (another client deleted it) or lost its score.
            await e.client.zadd(k.failed, {"gone": 1})
            await e.client.zadd(k.delayed, {"gone2": 1})
            await e.add("n", {}, JobOptions(job_id="noscore", delay=3600))
            await e.client.hdel(k.job("noscore"), "score")
            assert await e.retry(["gone"]) == []
            assert await e.promote("gone2") is False
            assert await e.promote("noscore") is True
            assert await e.client.zcard(k.failed) == 0
            assert await e.client.zcard(k.delayed) == 0
            assert [m.decode() for m in await e.client.zrange(k.wait, 0, -1)] == ["noscore"]
            assert not await e.client.exists(k.job("gone"))

    asyncio.run(main())


# -- a malformed job hash does not crash the fetch parser ------------------------------------


def test_a_malformed_job_fails_alone_and_the_rest_of_its_batch_runs(
    redis_url: str, tmp_path: Path
) -> None:
    ran: list[str] = []

    async def handler(data: Any, job: Any) -> None:
        ran.append(job.id)

    async def main() -> None:
        q = QueueConfig(name="mixed", handler="x:y", concurrency=10, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.pause()
            await e.add_bulk([("n", {"i": i}, JobOptions(job_id=f"ok{i}")) for i in range(5)])
            # Written by another client: data is not JSON, opts lack attempts.
            await e.add("n", {}, JobOptions(job_id="bad1"))
            await e.client.hset(e.keys.job("bad1"), "data", "{not json")
            await e.add("n", {}, JobOptions(job_id="bad2"))
            await e.client.hset(e.keys.job("bad2"), "opts", "[]")
            await e.resume()
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "mixed", redis_url, handler
            ):
                await wait_for_async(
                    lambda: _done(e, 2, 5), 20, message="2 malformed failed, 5 completed"
                )
            bad = await e.get_job("bad2")
            assert bad is not None and "MalformedJobError" in (bad.error or "")
            assert sorted(ran) == [f"ok{i}" for i in range(5)]

    asyncio.run(main())


# -- case 8: clean is bounded ------------------------------------------------------------------


def test_clean_of_waiting_jobs_looks_at_each_job_once(redis_url: str) -> None:
    """The old clean scanned the whole set in every call (O(N) per call, O(N^2) in all); now
    every call looks at a bounded chunk and resumes from a cursor: one read (HMGET of its
    created_at and join) per job."""

    async def main() -> None:
        q = QueueConfig(name="big", handler="x:y")
        n = 12_000
        async with engine_for(redis_url, q) as e:
            for _ in range(0, n, 1000):
                await e.add_bulk([("n", {}, None)] * 1000)
            before = await _reads(e.client)
            removed = await e.clean(0, 0, "waiting")
            hgets = await _reads(e.client) - before
            assert len(removed) == n == len(set(removed))
            assert (await _stats(e))["waiting"] == 0
            assert hgets <= n * 1.05, f"{hgets} job reads to clean {n} jobs"
            # With a grace nothing is old enough: a full walk that removes nothing.
            await e.add_bulk([("n", {}, None)] * 3000)
            assert await e.clean(3600, 0, "waiting") == []
            assert len(await e.clean(0, 2500, "waiting")) == 2500

    asyncio.run(main())


async def _calls(client: Any, command: str) -> int:
    info = await client.info("commandstats")
    return int(info.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _reads(client: Any) -> int:
    """Reads of job hashes so far: HGET and HMGET calls."""
    return await _calls(client, "hget") + await _calls(client, "hmget")


# -- smaller ones ------------------------------------------------------------------------------


def test_stalled_failures_follow_failed_retention(redis_url: str) -> None:
    async def main() -> None:
        q = QueueConfig(
            name="nokeep",
            handler="x:y",
            lease=0.1,
            max_stalls=0,
            retention=Retention(RetentionRule(None, None), RetentionRule(None, None, keep=False)),
        )
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="s"))
            c = QueueConsumer(e, "w", e.client)
            assert len((await c.fetch(1)).jobs) == 1  # its worker "dies"
            await wait_for_async(
                lambda: _no_job(c, e, "s"), 10, message="the stalled failure is removed"
            )
            assert (await _stats(e))["failed"] == 0

    asyncio.run(main())


async def _no_job(c: QueueConsumer, e: Any, job_id: str) -> bool:
    await c.fetch(1)
    return not await e.client.exists(e.keys.job(job_id))


@pytest.mark.parametrize("max_stalls", [0, 1, 2])
def test_max_stalls_is_bullmq_max_stalled_count(redis_url: str, max_stalls: int) -> None:
    """max_stalls N: a stalled job is recovered N times; the stall after that fails it."""

    async def main() -> None:
        q = QueueConfig(name=f"st{max_stalls}", handler="x:y", lease=0.1, max_stalls=max_stalls)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="s"))
            c = QueueConsumer(e, "w", e.client)
            recovered = -1
            while True:
                got = (await c.fetch(1)).jobs
                if got:
                    recovered += 1
                    await asyncio.sleep(0.15)  # the lease runs out
                    continue
                job = await e.get_job("s")
                assert job is not None
                if job.state == "failed":
                    break
                await asyncio.sleep(0.05)
            assert recovered == max_stalls
            assert f"stalled {max_stalls + 1} times" in (job.error or "")

    asyncio.run(main())


def test_registry_uses_the_server_clock(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose clock is 15 s behind still shows its live workers."""
    import time

    from cortexflow.engine import connect, registry

    async def main() -> None:
        client = connect(redis_url)
        try:
            real = time.time
            monkeypatch.setattr(time, "time", lambda: real() - 15.0)
            await registry.publish_worker(client, "cortexflow", "q", "w-behind", {}, ttl=10.0)
            monkeypatch.setattr(time, "time", real)
            live = await registry.live_workers(client, "cortexflow", "q")
            assert [w["id"] for w in live] == ["w-behind"]
            assert (await registry.live_worker_counts(client, "cortexflow", ["q"]))["q"] == 1
        finally:
            await client.aclose()

    asyncio.run(main())


def test_odd_options_and_payloads_are_refused(redis_url: str) -> None:
    async def main() -> None:
        q = QueueConfig(name="refuse", handler="x:y")
        async with engine_for(redis_url, q) as e:
            with pytest.raises(UsageError, match="job id"):
                await e.add("n", {}, JobOptions(job_id="abc\n"))
            with pytest.raises(UsageError, match="timeout"):
                await e.add("n", {}, JobOptions(timeout=math.nan))
            with pytest.raises(UsageError, match="timeout"):
                await e.add("n", {}, JobOptions(timeout=math.inf))
            with pytest.raises(PayloadError, match="surrogate"):
                await e.add("n", {"file": ODD})
            with pytest.raises(UsageError, match="surrogate"):
                await e.add(ODD, {})
            # 2.5 million 'é' are 2.5 M characters (under 4 MiB) but 5 MB of UTF-8.
            with pytest.raises(PayloadError, match="byte limit"):
                await e.add("n", {"text": "é" * 2_500_000})
            assert (await _stats(e))["waiting"] == 0

    asyncio.run(main())


def test_results_and_log_lines_are_bounded_with_a_marker(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any, job: Any) -> Any:
        await job.log("x" * 100_000)
        return "y" * 3_000_000

    async def main() -> None:
        q = QueueConfig(name="big", handler="x:y", retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="b"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "big", redis_url, handler
            ):
                await wait_for_async(lambda: _done(e, 0, 1), 20, message="completed")
            raw = await e.client.hget(e.keys.job("b"), "result")
            assert len(raw) <= 1024 * 1024
            job = await e.get_job("b")
            assert job is not None and isinstance(job.result, str)
            assert job.result.startswith('"yyy') and "[cut: 3,000,002 bytes" in job.result
            (line,) = await e.get_logs("b")
            assert len(line.encode()) <= 16 * 1024 and "[cut: 100,000 bytes" in line

    asyncio.run(main())


def test_a_refused_finish_does_not_orphan_the_jobs_its_pipelined_fetch_leased(
    redis_url: str,
) -> None:
    """The worker records outcomes and leases more jobs in one round trip. When the finish part
    is refused, the jobs the fetch part leased go straight back to waiting (no stall counted)
    instead of staying active under a lease nobody renews."""
    from cortexflow.engine.outcomes import Outcome, OutcomeKind

    async def main() -> None:
        q = QueueConfig(name="orphans", handler="x:y", lease=30.0)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {}, JobOptions(job_id=f"j{i}")) for i in range(4)])
            c = QueueConsumer(e, "w", e.client)
            (first,) = (await c.fetch(1)).jobs
            bad = Outcome(OutcomeKind.RETRY, first.job.id, first.token, delay_ms="soon")  # type: ignore[arg-type]
            with pytest.raises(redis.ResponseError, match="not an outcome"):
                await c.finish_and_fetch([bad], 3)
            s = await _stats(e)
            assert (s["active"], s["waiting"]) == (1, 3)  # only the first job is still held
            for i in (1, 2, 3):
                job = await e.get_job(f"j{i}")
                assert job is not None and job.state == "waiting" and job.stalls == 0

    asyncio.run(main())


def test_jobs_leased_while_the_worker_waits_for_work_wake_it_at_once(redis_url: str) -> None:
    """Jobs the finish round trip leases while listen() waits for work must start now, not when
    the wait times out (up to a lease later): parked there, they stalled again whenever their
    worker was killed, and recovered stalled jobs are the next ones leased."""

    async def main() -> None:
        q = QueueConfig(name="parked", handler="x:y", lease=30.0)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {}, JobOptions(job_id=f"j{i}")) for i in range(2)])
            c = QueueConsumer(e, "w", e.client)
            (first,) = (await c.fetch(1)).jobs
            await e.client.delete(e.keys.marker)  # no wake-up token left over from the add
            waiting = asyncio.ensure_future(c.wait_for_work(8.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            from cortexflow.engine.outcomes import Outcome, OutcomeKind

            done = Outcome(OutcomeKind.COMPLETED, first.job.id, first.token, result="1")
            t0 = asyncio.get_running_loop().time()
            _, fetched = await c.finish_and_fetch([done], 1)
            assert fetched is not None and [f.job.id for f in fetched.jobs] == ["j1"]
            assert await asyncio.wait_for(waiting, 3.0) is True
            assert asyncio.get_running_loop().time() - t0 < 3.0
            await c.close()

    asyncio.run(main())


# -- credentials in a handler's error never reach Redis -----------------------------------------


def test_a_handler_error_quoting_a_url_stores_it_without_the_password(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> Any:
        raise ConnectionError("cannot reach postgresql://app:hunter2/x@db.internal:5432/shop")

    async def main() -> None:
        q = QueueConfig(name="leaky", handler="x:y", attempts=1, retention=KEEP_ALL)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "leaky", redis_url, handler
            ):
                await wait_for_async(lambda: _done(e, 1, 0), 20, message="the job failed")
            job = await e.get_job("j")
            assert job is not None
            assert "postgresql://app:***@db.internal:5432/shop" in (job.error or "")
            assert "hunter2" not in (job.error or "") + (job.stacktrace or "")
            assert "ConnectionError" in (job.stacktrace or "")

    asyncio.run(main())
