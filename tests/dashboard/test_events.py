"""Queue events and metrics history, as the scripts write them: QueueEvents (resumable),
`cortexflow events`, the capped stream, per-minute history and the histogram buckets."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow import QueueEvents, QueueManager
from cortexflow.engine import events as stream
from cortexflow.engine import history
from cortexflow.engine.events import EVENTS_MAXLEN, Event
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.scripts import source
from tests.helpers.dashboard import wait_until, workers


async def collect(events: QueueEvents, until: Any, timeout: float = 20.0) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"events so far: {[(e.event, e.job_id) for e in got]}")
        got += await events.read(0.5)
    return got


def test_a_job_life_in_events(project: Path, redis_url: str) -> None:
    async def main() -> list[Event]:
        async with (
            QueueManager(project, redis_url) as manager,
            QueueEvents("work", manager=manager) as events,
        ):
            await events.read()  # pins "now": only what follows
            jid = await manager.add_job("work", "life", {"progress": 40})
            got = await collect(events, lambda g: any(e.event == "completed" for e in g))
            assert all(e.job_id == jid for e in got)
            return got

    with workers(project, redis_url, ["work"]):
        got = asyncio.run(main())
    assert [e.event for e in got] == ["added", "active", "progress", "completed"]
    added, active, progress, _ = got
    assert added.fields == {"name": "life", "state": "waiting"}
    assert active.fields == {"attempt": "1"}
    assert progress.fields == {"data": "40"}
    assert got[0].timestamp == pytest.approx(time.time(), abs=30)


def test_failed_retried_removed_paused_and_more(project: Path, redis_url: str) -> None:
    async def main() -> list[tuple[str, str | None]]:
        async with QueueManager(project, redis_url) as manager:
            q = manager.get_queue("work")
            events = QueueEvents("work", manager=manager, last_event_id="0")
            with workers(project, redis_url, ["work"]):
                jid = await manager.add_job("work", "f", {"fail": 1})
                await collect(events, lambda g: any(e.event == "failed" for e in g))
            await q.retry([jid])
            later = await manager.add_job("work", "d", {}, delay=600_000)
            await q.promote(later)
            await q.remove(later)
            await manager.pause_queue("work")
            await manager.resume_queue("work")
            await manager.drain_queue("work")
            await manager.clean_queue("work", 0, 0, "failed")
            got = await QueueEvents("work", manager=manager, last_event_id="0").read()
            return [(e.event, e.job_id) for e in got]

    seq = asyncio.run(main())
    names = [n for n, _ in seq]
    assert names[:3] == ["added", "active", "failed"]
    assert names[3:] == [
        "retried",
        "added",
        "promoted",
        "removed",
        "paused",
        "resumed",
        "drained",
    ]


def test_events_resume_after_an_id(project: Path, redis_url: str) -> None:
    async def main() -> None:
        async with QueueManager(project, redis_url) as manager:
            a = await manager.add_job("work", "a", {})
            b = await manager.add_job("work", "b", {})
            c = await manager.add_job("work", "c", {})
            everything = await QueueEvents("work", manager=manager, last_event_id="0").read()
            assert [e.job_id for e in everything] == [a, b, c]
            after_a = QueueEvents("work", manager=manager, last_event_id=everything[0].id)
            assert [e.job_id for e in await after_a.read()] == [b, c]
            assert after_a.last_event_id == everything[-1].id
            assert await after_a.read() == []
            it = QueueEvents("work", manager=manager, last_event_id=everything[1].id)
            async for event in it:
                assert event.job_id == c
                break

    asyncio.run(main())


def test_the_stream_is_capped(project: Path, redis_url: str, redis_client: redis.Redis) -> None:
    async def main() -> None:
        async with QueueManager(project, redis_url) as manager:
            for _ in range(12):
                await manager.add_bulk("work", [{"name": "x", "data": {}}] * 1000)

    asyncio.run(main())
    length = redis_client.xlen(QueueKeys("cortexflow", "work").events)
    assert EVENTS_MAXLEN <= length < EVENTS_MAXLEN + 200


def test_events_command_follows_and_prints_json(project: Path, redis_url: str) -> None:
    env = {"NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "cortexflow", "events", "work", "-f", str(project)]
    proc = subprocess.Popen(
        [*cmd, "--redis-url", redis_url, "--json", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, **env},
    )
    try:
        client = redis.Redis.from_url(redis_url)

        def following() -> bool:
            # The command is following once it has a blocked XREAD on the server.
            return b"xread" in client.execute_command("CLIENT", "LIST").lower()

        wait_until(following, timeout=30, what="events command blocked on XREAD")
        client.close()

        async def add() -> list[str]:
            async with QueueManager(project, redis_url) as manager:
                return [await manager.add_job("work", f"n{i}", {}) for i in range(2)]

        ids = asyncio.run(add())
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["event"], x["jobId"]) for x in lines] == [("added", ids[0]), ("added", ids[1])]


def test_events_command_text_and_unknown_queue(project: Path, redis_url: str) -> None:
    async def add() -> str:
        async with QueueManager(project, redis_url) as manager:
            return await manager.add_job("work", "hello", {})

    jid = asyncio.run(add())
    base = [sys.executable, "-m", "cortexflow", "events", "-f", str(project)]
    r = subprocess.run(
        [*base, "work", "--redis-url", redis_url, "--from", "0", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert re.match(rf"^\S+ \S+Z  added  {jid}  name=hello state=waiting$", r.stdout.strip())
    r = subprocess.run(
        [*base, "nope", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "unknown queue 'nope'" in r.stderr


def test_history_buckets_match_the_script() -> None:
    lua = source("finish")  # with its includes: the function's body, the event stream's cap
    bounds = re.search(r"local BOUNDS = \{([^}]*)\}", lua)
    assert bounds is not None
    assert tuple(int(x) for x in bounds.group(1).split(",")) == history.BOUNDS_MS
    assert f"local EVENTS_MAXLEN = {EVENTS_MAXLEN}\n" in lua


def test_history_counts_durations_and_waits(project: Path, redis_url: str) -> None:
    async def main() -> None:
        async with QueueManager(project, redis_url) as manager:
            await manager.add_bulk("work", [{"name": "s", "data": {"sleep": 0.2}}] * 3)
            await manager.add_job("work", "f", {"fail": 1})
            with workers(project, redis_url, ["work"]):
                deadline = time.monotonic() + 30
                while True:
                    s = await manager.get_queue_stats("work")
                    if s["completed"] == 3 and s["failed"] == 1:
                        break
                    assert time.monotonic() < deadline, s
                    await asyncio.sleep(0.05)
            client = await manager.redis_client()
            rows = await history.per_minute(client, "cortexflow", "work", 3)
            total = history.merge([s for _, s in rows])
            assert (total.completed, total.failed, total.retried) == (3, 1, 0)
            assert sum(total.duration_buckets) == 4
            # three runs slept 200 ms: they are in the (100, 250] ms bucket or above
            assert sum(total.duration_buckets[5:]) >= 3
            assert total.duration_sum_ms >= 600
            alltime = (await history.totals(client, "cortexflow", ["work"]))["work"]
            assert alltime == total
            d = total.to_dict()["duration"]
            assert d["count"] == 4 and d["p95Ms"] >= 250

    asyncio.run(main())


def test_quantile_is_the_bucket_bound() -> None:
    counts = [0] * (len(history.BOUNDS_MS) + 1)
    assert history.quantile(counts, 0.5) is None
    counts[2] = 9  # <= 25 ms
    counts[7] = 1  # <= 1000 ms
    assert history.quantile(counts, 0.5) == 25.0
    assert history.quantile(counts, 0.95) == 1000.0
    counts[-1] = 100
    assert history.quantile(counts, 0.99) == 300000.0


def test_recent_and_last_id(project: Path, redis_url: str) -> None:
    async def main() -> None:
        async with QueueManager(project, redis_url) as manager:
            client = await manager.redis_client()
            assert await stream.last_id(client, "cortexflow", "work") == "0-0"
            ids = [await manager.add_job("work", "x", {}) for _ in range(3)]
            recent = await stream.recent(client, "cortexflow", "work", 2)
            assert [e.job_id for e in recent] == [ids[2], ids[1]]
            assert await stream.last_id(client, "cortexflow", "work") == recent[0].id

    asyncio.run(main())


def test_stalled_then_failed_by_the_stall_limit(redis_url: str) -> None:
    from cortexflow.config.model import QueueConfig
    from cortexflow.engine.consumer import QueueConsumer
    from tests.helpers.jobs import engine_for

    queue = QueueConfig(name="s", handler="x:y", lease=0.2, max_stalls=1)

    async def main() -> list[tuple[str, dict[str, str]]]:
        async with engine_for(redis_url, queue) as engine:
            jid = await engine.add("lost", {})
            consumer = QueueConsumer(engine, "dead-worker", engine.client)
            deadline = time.monotonic() + 20
            seen: list[Event] = []
            # Lease it twice and never finish: the first expiry stalls it (back to waiting),
            # the second fails it (max_stalls 1: one recovery, as BullMQ's maxStalledCount).
            while not any(e.event == "failed" for e in seen):
                assert time.monotonic() < deadline, [e.event for e in seen]
                await consumer.fetch(1)
                await asyncio.sleep(0.05)
                seen = await stream.read(engine.client, "cortexflow", "s", "0")
            assert all(e.job_id == jid for e in seen)
            return [(e.event, dict(e.fields)) for e in seen]

    got = asyncio.run(main())
    assert [name for name, _ in got] == ["added", "active", "stalled", "active", "failed"]
    assert got[-1][1] == {"error": "stalled"}
