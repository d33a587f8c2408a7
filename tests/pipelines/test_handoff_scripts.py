"""The hand-off is written by the finish call that records the completion: both or neither,
only while the run's lease token holds, and a finish sent twice adds no second child."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from redis.exceptions import ResponseError

from cortexflow.config.model import GroupConfig
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import PREFIX
from tests.pipelines.conftest import Route, complete, lease_one, queues, router

ROUTES = {"parent": [Route(to="child", name="go", data="/payload", id=("c", "$id"))]}


def run(main):  # type: ignore[no-untyped-def]
    asyncio.run(main())


async def _child_added_events(e: QueueEngine) -> int:
    entries = await e.client.xrange(f"{{{PREFIX}:child}}:events")
    return sum(1 for _, f in entries if f[b"e"] == b"added")


def test_completion_and_hand_off_are_written_together(redis_url: str) -> None:
    async def main() -> None:
        cfg = queues("parent", "child", routes=ROUTES)
        client = connect(redis_url)
        p, c = QueueEngine(client, cfg["parent"], PREFIX), QueueEngine(client, cfg["child"], PREFIX)
        fetched = await lease_one(p, "p1")
        out = complete(fetched, {"payload": {"x": 1}}, router(cfg, "parent"))
        done, lost, _ = await QueueConsumer(p, "w", client).finish([out])
        assert (done, lost) == (1, 0)
        parent = await p.get_job("p1")
        child = await c.get_job("c-p1")
        assert parent is not None and parent.state == "completed"
        assert child is not None and child.state == "waiting" and child.data == {"x": 1}
        raw = await client.hgetall(f"{{{PREFIX}:child}}:j:c-p1")
        assert json.loads(raw[b"parent"]) == ["parent", "p1"]
        assert json.loads(await client.hget(f"{{{PREFIX}:parent}}:j:p1", "children")) == {
            "n": 1,
            "ids": [["child", "c-p1"]],
        }
        await client.aclose()

    run(main)


def test_a_refused_finish_writes_neither_the_completion_nor_the_hand_off(redis_url: str) -> None:
    """A batch whose hand-off argument is malformed is refused before its first write: the
    completion of the run beside it is not written either."""

    async def main() -> None:
        cfg = queues("parent", "child", routes=ROUTES)
        client = connect(redis_url)
        p, c = QueueEngine(client, cfg["parent"], PREFIX), QueueEngine(client, cfg["child"], PREFIX)
        await p.add_bulk([("n", {}, None)] * 0)
        a = await lease_one(p, "pa")
        b = await lease_one(p, "pb")
        good = complete(a, {"payload": {"x": 1}}, router(cfg, "parent"))
        bad = dataclasses.replace(
            complete(b, {"payload": {"x": 2}}, router(cfg, "parent")),
            handoffs=(["d", "{x}", "[]", [["", "n", "{}", 0, 0]], 0],),
        )
        with pytest.raises(ResponseError, match="hand-off job"):
            await QueueConsumer(p, "w", client).finish([good, bad])
        for jid in ("pa", "pb"):
            job = await p.get_job(jid)
            assert job is not None and job.state == "active"
        assert await c.get_job("c-pa") is None
        assert await _child_added_events(c) == 0
        await client.aclose()

    run(main)


def test_a_stale_token_writes_neither(redis_url: str) -> None:
    """A run whose lease was lost (the job was leased again) records nothing and hands off
    nothing; the run that holds the job does both."""

    async def main() -> None:
        cfg = queues("parent", "child", routes=ROUTES)
        client = connect(redis_url)
        p, c = QueueEngine(client, cfg["parent"], PREFIX), QueueEngine(client, cfg["child"], PREFIX)
        old = await lease_one(p, "p2")
        # The lease runs out: put its deadline in the past, the next fetch recovers it.
        await client.zadd(p.keys.active, {"p2": 1})
        consumer = QueueConsumer(p, "w", client)
        await consumer.fetch(0)  # recovers the stalled job to waiting
        new = await lease_one(p)
        assert new.token != old.token
        stale = complete(old, {"payload": {"run": "old"}}, router(cfg, "parent"))
        assert await consumer.finish([stale]) == (0, 1, 0)
        assert await c.get_job("c-p2") is None
        job = await p.get_job("p2")
        assert job is not None and job.state == "active"
        fresh = complete(new, {"payload": {"run": "new"}}, router(cfg, "parent"))
        assert await consumer.finish([fresh]) == (1, 0, 0)
        child = await c.get_job("c-p2")
        assert child is not None and child.data == {"run": "new"}
        await client.aclose()

    run(main)


def test_a_finish_sent_twice_adds_no_second_child(redis_url: str) -> None:
    """The same outcome recorded twice (a call whose reply was lost, sent again), even after
    the child ran and was removed by retention, adds the child once."""

    async def main() -> None:
        routes = {"parent": [Route(to="child", name="go", for_each="/items")]}
        cfg = queues("parent", "child", routes=routes)
        client = connect(redis_url)
        p, c = QueueEngine(client, cfg["parent"], PREFIX), QueueEngine(client, cfg["child"], PREFIX)
        fetched = await lease_one(p, "p3")
        out = complete(fetched, {"items": [{"a": 1}, {"a": 2}]}, router(cfg, "parent"))
        consumer = QueueConsumer(p, "w", client)
        assert await consumer.finish([out]) == (1, 0, 0)
        assert await consumer.finish([out]) == (0, 1, 0)
        assert await _child_added_events(c) == 2
        assert sorted(await client.zrange(c.keys.wait, 0, -1)) == [
            b"parent-p3-0-0",
            b"parent-p3-0-1",
        ]
        await client.aclose()

    run(main)


def test_a_route_the_result_cannot_follow_fails_the_run_with_a_clear_error() -> None:
    from cortexflow.engine.jobs import Job
    from cortexflow.engine.routes import RouteError

    cfg = queues(
        "parent", "child", routes={"parent": [Route(to="child", name="go", for_each="/x")]}
    )
    job = Job.from_hash(cfg["parent"], "p", {b"name": b"n", b"data": b"{}", b"state": b"active"})
    with pytest.raises(RouteError, match=r"next\[0\] \(to child\): for_each '/x' found nothing"):
        router(cfg, "parent").completed(job, {"y": 1})


def test_a_hand_off_into_a_grouped_queue_waits_in_its_group(redis_url: str) -> None:
    """Jobs a route adds to a queue with `group:` wait in their groups: one at a time per
    group, as if added by add_job (the shipped webhook -> message-processing hand-off)."""

    async def main() -> None:
        fan = {"parent": [Route(to="child", name="go", for_each="/items", id=("$id", "/n"))]}
        cfg = queues("parent", "child", routes=fan)
        cfg["child"] = dataclasses.replace(cfg["child"], group=GroupConfig(key=("/k",)))
        client = connect(redis_url)
        p, c = QueueEngine(client, cfg["parent"], PREFIX), QueueEngine(client, cfg["child"], PREFIX)
        fetched = await lease_one(p, "g1")
        items = [{"k": "a", "n": "1"}, {"k": "a", "n": "2"}, {"k": "b", "n": "3"}]
        out = complete(fetched, {"items": items}, router(cfg, "parent"))
        assert (await QueueConsumer(p, "w", client).finish([out]))[:2] == (1, 0)
        groups = {j: (await c.get_job(f"g1-{j}")).group for j in ("1", "2", "3")}  # type: ignore[union-attr]
        assert groups == {"1": "a", "2": "a", "3": "b"}
        leased = (await QueueConsumer(c, "w", client).fetch(3)).jobs
        assert sorted(f.job.id for f in leased) == ["g1-1", "g1-3"]  # g1-2 waits for g1-1
        await client.aclose()

    run(main)
