"""Groups at the script level: one worker's fetch/finish calls against the real server, checking
which jobs each fetch leases (order, concurrency, round-robin turns, priority across groups,
strict and relaxed retries, stalls, pause, rate limit) and that the group bookkeeping adds up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cortexflow.config.model import Backoff, GroupConfig, QueueConfig, RateLimit
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import Fetched, QueueEngine
from cortexflow.errors import UsageError
from tests.helpers.jobs import engine_for


def queue(**group: Any) -> QueueConfig:
    lease = group.pop("lease", 30.0)
    return QueueConfig(
        name="g",
        handler="x:y",
        attempts=3,
        lease=lease,
        backoff=Backoff(type="fixed", delay=0.4),
        group=GroupConfig(key=("/g",), **group),
    )


def run(q: QueueConfig, url: str, body: Callable[[QueueEngine, QueueConsumer], Awaitable[None]]):
    async def main() -> None:
        async with engine_for(url, q) as e:
            await body(e, QueueConsumer(e, "w", e.client))

    asyncio.run(main())


def names(got: list[Fetched]) -> list[str]:
    return [f"{f.job.data.get('g', '-')}{f.job.data['i']}" for f in got]


async def fetch(c: QueueConsumer, n: int = 10) -> list[Fetched]:
    return (await c.fetch(n)).jobs


def done(f: Fetched) -> Outcome:
    return Outcome(OutcomeKind.COMPLETED, f.job.id, f.token)


def retry(f: Fetched, delay_ms: int) -> Outcome:
    return Outcome(OutcomeKind.RETRY, f.job.id, f.token, error="boom", delay_ms=delay_ms)


async def add(e: QueueEngine, group: str, *numbers: int, **opts: Any) -> None:
    await e.add_bulk([("n", {"g": group, "i": i}, JobOptions(**opts) if opts else None)
                      for i in numbers])  # fmt: skip


async def counts(e: QueueEngine) -> dict[str, Any]:
    return await e.groups.stats()


def test_one_job_per_group_at_a_time_in_order(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2, 3)
        await add(e, "b", 1, 2)
        first = await fetch(c)
        assert names(first) == ["a1", "b1"]  # one per group, although 10 slots are free
        assert await fetch(c) == []
        await c.finish([done(first[0])])
        second = await fetch(c)
        assert names(second) == ["a2"]
        await c.finish([done(second[0]), done(first[1])])
        assert sorted(names(await fetch(c))) == ["a3", "b2"]
        assert (await e.stats())["waiting"] == 0

    run(queue(), redis_url, body)


def test_groups_take_turns_a_backlog_does_not_delay_new_groups(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "big", *range(1, 101))
        for s in range(5):
            await add(e, f"s{s}", 1)
        order: list[str] = []
        for _ in range(12):
            (f,) = await fetch(c, 1)
            order += names([f])
            await c.finish([done(f)])
        # The big group goes first (it was first), then every single job before its second.
        assert order[:7] == ["big1", "s01", "s11", "s21", "s31", "s41", "big2"]
        assert order[7:] == ["big3", "big4", "big5", "big6", "big7"]

    run(queue(concurrency=3), redis_url, body)


def test_group_concurrency_and_fifo_inside(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", *range(1, 8))
        got = await fetch(c)
        assert names(got) == ["a1", "a2", "a3"]
        await c.finish([done(got[1])])
        assert names(await fetch(c)) == ["a4"]

    run(queue(concurrency=3), redis_url, body)


def test_priority_goes_first_across_groups_and_inside_a_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2)
        await add(e, "b", 1)
        await add(e, "b", 2, priority=50)
        await e.add("n", {"i": 9}, JobOptions(priority=10))  # no group key: ungrouped
        got = await fetch(c, 1)
        assert names(got) == ["b2"]  # the highest priority anywhere, ahead of b's first job
        assert names(await fetch(c, 1)) == ["-9"]  # then priority 10 (ungrouped)
        assert names(await fetch(c, 1)) == ["a1"]  # then a, b is busy
        await c.finish([done(got[0])])
        assert names(await fetch(c, 1)) == ["b1"]

    run(queue(), redis_url, body)


def test_jobs_without_a_group_key_run_as_in_a_plain_queue(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await e.add_bulk([("n", {"i": i}, None) for i in range(5)])
        await add(e, "a", 1, 2)
        got = await fetch(c)
        assert names(got) == ["-0", "-1", "-2", "-3", "-4", "a1"]

    run(queue(), redis_url, body)


def test_strict_a_retrying_job_holds_its_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2)
        await add(e, "b", 1, 2)
        a1, b1 = await fetch(c)
        await c.finish([retry(a1, 400), done(b1)])
        assert names(await fetch(c)) == ["b2"]  # a2 may not pass a1
        assert (await e.get_job(a1.job.id)).state == "delayed"  # type: ignore[union-attr]
        assert await e.promote(a1.job.id)  # runs now: its group wakes
        again = await fetch(c)
        assert names(again) == ["a1"]
        await c.finish([done(again[0])])
        assert names(await fetch(c)) == ["a2"]

    run(queue(order="strict"), redis_url, body)


def test_relaxed_later_jobs_pass_a_retrying_one(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2)
        (a1,) = await fetch(c)
        await c.finish([retry(a1, 400)])
        a2 = await fetch(c)
        assert names(a2) == ["a2"]
        await asyncio.sleep(0.5)
        assert await fetch(c) == []  # a1 is due, but a2 holds the group's one slot
        await c.finish([done(a2[0])])
        assert names(await fetch(c)) == ["a1"]

    run(queue(order="relaxed"), redis_url, body)


def test_stalled_job_runs_again_before_the_next_of_its_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2)
        assert names(await fetch(c)) == ["a1"]
        await asyncio.sleep(0.4)  # the lease runs out: its worker "died"
        assert names(await fetch(c)) == ["a1"]
        assert await fetch(c) == []

    run(queue(lease=0.2), redis_url, body)


def test_pause_and_resume_one_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        assert await e.groups.pause("a") is True
        assert await e.groups.pause("a") is False
        await add(e, "a", 1)
        await add(e, "b", 1)
        assert names(await fetch(c)) == ["b1"]
        stats = await counts(e)
        assert {"group": "a", "waiting": 1, "active": 0, "paused": True} in stats["groups"]
        assert {"group": "b", "waiting": 0, "active": 1, "paused": False} in stats["groups"]
        await e.groups.pause("a", paused=False)
        assert names(await fetch(c)) == ["a1"]

    run(queue(), redis_url, body)


def test_group_rate_limit(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", *range(1, 6))
        await add(e, "b", 1)
        first = await c.fetch(10)
        assert names(first.jobs) == ["a1", "b1", "a2"]
        await c.finish([done(f) for f in first.jobs])
        later = await c.fetch(10)
        assert later.jobs == [] and later.wait is not None and 0 < later.wait <= 0.51
        await asyncio.sleep(later.wait + 0.05)
        assert names(await fetch(c)) == ["a3", "a4"]

    run(queue(concurrency=5, rate_limit=RateLimit(max=2, duration=0.5)), redis_url, body)


def test_counts_follow_remove_drain_clean_and_obliterate(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2, 3)
        await add(e, "b", 1)
        ids = [j.id for j in await e.groups.jobs("a")]
        assert len(ids) == 3
        assert await e.remove(ids[0])
        assert (await e.stats())["waiting"] == 3
        assert (await counts(e))["groups"][0] == {
            "group": "a",
            "waiting": 2,
            "active": 0,
            "paused": False,
        }
        assert len(await e.clean(0, state="waiting")) == 3
        assert (await e.stats())["waiting"] == 0
        assert (await counts(e))["groups"] == []
        await add(e, "a", 4)
        assert await e.drain() == 1
        assert (await e.stats())["waiting"] == 0
        await add(e, "a", 5)
        assert names(await fetch(c)) == ["a5"]
        await e.obliterate(force=True)
        keys = await e.client.keys("{cortexflow:g}*")
        assert [k for k in keys if b":j:" not in k and b":gl:" not in k] == []

    run(queue(), redis_url, body)


def test_explicit_group_needs_a_grouped_queue(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        with pytest.raises(UsageError, match="has no groups"):
            await e.add("n", {"i": 1}, JobOptions(group="a"))

    run(QueueConfig(name="plain", handler="x:y"), redis_url, body)


def test_explicit_group_wins_over_the_data(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await e.add("n", {"g": "a", "i": 1}, JobOptions(group="x"))
        await e.add("n", {"g": "a", "i": 2}, JobOptions(group="x"))
        got = await fetch(c)
        assert names(got) == ["a1"] and got[0].job.id
        job = await e.get_job(got[0].job.id)
        assert job is not None and job.group == "x"

    run(queue(), redis_url, body)


def test_waiting_jobs_of_groups_are_listed_and_counted(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await e.add("n", {"i": 0}, None)
        await add(e, "a", 1, 2, 3)
        await add(e, "b", 1)
        listed = [f"{j.data.get('g', '-')}{j.data['i']}" for j in await e.list_jobs("waiting")]
        assert listed == ["-0", "a1", "a2", "a3", "b1"]
        window = await e.list_jobs("waiting", 2, 2)
        assert [f"{j.data['g']}{j.data['i']}" for j in window] == ["a2", "a3"]
        assert (await e.stats())["waiting"] == 5

    run(queue(), redis_url, body)


def test_a_group_is_never_held_shut_by_a_job_that_no_longer_runs(redis_url: str) -> None:
    """A client without the group bookkeeping (an older worker's stall recovery, a hand edit)
    can leave a job counted as running in its group: at the group's cap it is dropped."""

    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1)
        await e.client.sadd("{cortexflow:g}:ga:a", "gone-job")
        assert names(await fetch(c)) == ["a1"]

    run(queue(), redis_url, body)


def test_delay_promote_release_fail_and_retry_keep_the_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, delay=3600.0)
        await add(e, "a", 2)
        (a2,) = await fetch(c)
        assert names([a2]) == ["a2"]  # a1 is delayed: not in the group's line yet
        assert await e.promote((await e.list_jobs("delayed"))[0].id)
        assert await fetch(c) == []  # a1 waits now, behind the running a2
        assert await c.release([(a2.job.id, a2.token)]) == 1  # a stopping worker gives a2 back
        got = await fetch(c)
        assert names(got) == ["a1"]  # a1 was added first: it runs before a2
        failed = Outcome(OutcomeKind.FAILED, got[0].job.id, got[0].token, error="no")
        await c.finish([failed])  # failed for good: the group goes on
        (again,) = await fetch(c)
        assert names([again]) == ["a2"]
        await c.finish([done(again)])
        assert await e.retry([got[0].job.id]) == [got[0].job.id]
        assert names(await fetch(c)) == ["a1"]

    run(queue(), redis_url, body)


def test_a_paused_queue_starts_no_job_of_any_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1)
        await e.pause()
        assert await fetch(c) == []
        await e.resume()
        assert names(await fetch(c)) == ["a1"]

    run(queue(), redis_url, body)


def test_a_job_failed_by_the_stall_limit_frees_its_group(redis_url: str) -> None:
    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        await add(e, "a", 1, 2)
        assert names(await fetch(c)) == ["a1"]
        await asyncio.sleep(0.4)
        assert names(await fetch(c)) == ["a2"]  # a1 stalled past max_stalls 0: failed
        assert (await e.stats())["failed"] == 1

    q = queue(lease=0.2)
    run(QueueConfig(**{**q.__dict__, "max_stalls": 0}), redis_url, body)


def test_a_groups_jobs_of_another_state_are_found_past_the_first_chunks(redis_url: str) -> None:
    """`jobs --group` outside waiting reads the whole state, not only its first jobs: a group's
    3 delayed jobs due after 10,500 of another group's are listed, in due order, up to the
    limit."""

    async def body(e: QueueEngine, c: QueueConsumer) -> None:
        for start in range(0, 10_500, 1_500):
            await add(e, "big", *range(start, start + 1_500), delay=600)
        for i in (1, 2, 3):
            await add(e, "a", i, delay=900 + i)
        assert (await e.stats())["delayed"] == 10_503
        listed = [j.data["i"] for j in await e.groups.jobs("a", "delayed")]
        assert listed == [1, 2, 3]
        assert [j.data["i"] for j in await e.groups.jobs("a", "delayed", limit=2)] == [1, 2]
        assert len(await e.groups.jobs("big", "delayed", limit=700)) == 700
        assert await e.groups.jobs("nobody", "delayed") == []

    run(queue(), redis_url, body)
