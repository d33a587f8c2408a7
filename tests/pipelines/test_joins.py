"""Joins: once every child of a fan-out ended -- completed, failed for good, stalled out,
removed by an operator -- exactly one join job is added with their outcomes; an empty fan-out
adds it at once; each child counts once."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import PREFIX, inproc_worker, make_config
from tests.helpers.poll import wait_for_async
from tests.pipelines.conftest import Join, Route, complete, lease_one, queues, router


def fan_out(policy: str = "collect") -> dict[str, Any]:
    join = Join(to="summary", name="sum", on_child_failure=policy)  # type: ignore[arg-type]
    route = Route(to="child", name="item", for_each="/items", id=("$id", "/k"), join=join)
    cfg = queues("parent", "child", "summary", routes={"parent": [route]})
    return {n: dataclasses.replace(q, max_stalls=0) for n, q in cfg.items()}


async def _setup(url: str, items: list[Any], policy: str = "collect") -> tuple[Any, ...]:
    cfg = fan_out(policy)
    client = connect(url)
    e = {n: QueueEngine(client, q, PREFIX) for n, q in cfg.items()}
    fetched = await lease_one(e["parent"], "b1")
    out = complete(fetched, {"items": items}, router(cfg, "parent"))
    assert await QueueConsumer(e["parent"], "w", client).finish([out]) == (1, 0, 0)
    return client, e


async def _end(e: QueueEngine, kind: OutcomeKind, text: str) -> str:
    fetched = await lease_one(e)
    if kind is OutcomeKind.COMPLETED:
        o = Outcome(kind, fetched.job.id, fetched.token, result=text)
    else:
        o = Outcome(kind, fetched.job.id, fetched.token, error=text)
    assert await QueueConsumer(e, "w", e.client).finish([o]) == (1, 0, 0)
    return fetched.job.id


async def _summaries(e: QueueEngine) -> list[Any]:
    ids = await e.client.zrange(e.keys.wait, 0, -1) + await e.client.zrange(e.keys.failed, 0, -1)
    return [await e.get_job(i.decode()) for i in ids]


def test_every_kind_of_end_counts_once_and_the_join_is_added_once(redis_url: str) -> None:
    async def main() -> None:
        items = [{"k": "a"}, {"k": "b"}, {"k": "c"}, {"k": "d"}]
        client, e = await _setup(redis_url, items)
        child = e["child"]
        await _end(child, OutcomeKind.COMPLETED, '{"ok":1}')
        await _end(child, OutcomeKind.FAILED, "boom")
        # A stall past max_stalls (0) fails the third child in fetch.
        stalled = await lease_one(child)
        await client.zadd(child.keys.active, {stalled.job.id: 1})
        await QueueConsumer(child, "w", client).fetch(0)
        assert await _summaries(e["summary"]) == []  # one child left
        # The operator removes the last one, still waiting.
        assert await child.remove("b1-d")
        (join,) = await _summaries(e["summary"])
        assert join.id == "sum-b1" and join.name == "sum" and join.state == "waiting"
        d = join.data
        assert (d["total"], d["completed"], d["failed"], d["removed"]) == (4, 1, 2, 1)
        assert d["parent"] == ["parent", "b1"]
        by_id = {x["id"]: x for x in d["results"]}
        assert by_id["b1-a"] == {"id": "b1-a", "state": "completed", "result": {"ok": 1}}
        assert by_id["b1-b"]["state"] == "failed" and by_id["b1-b"]["error"] == "boom"
        assert "stalled" in by_id["b1-c"]["error"] and by_id["b1-d"]["state"] == "removed"
        # An operator's retry of a counted child runs it again; the join is not added again.
        assert await child.retry(["b1-b"]) == ["b1-b"]
        await _end(child, OutcomeKind.COMPLETED, "2")
        assert len(await _summaries(e["summary"])) == 1
        await client.aclose()

    asyncio.run(main())


def test_an_empty_fan_out_adds_the_join_at_once(redis_url: str) -> None:
    async def main() -> None:
        client, e = await _setup(redis_url, [])
        (join,) = await _summaries(e["summary"])
        assert join.data["total"] == 0 and join.data["results"] == []
        assert await client.zcard(e["child"].keys.wait) == 0
        await client.aclose()

    asyncio.run(main())


def test_a_retried_child_is_counted_at_its_end_only(redis_url: str) -> None:
    async def main() -> None:
        client, e = await _setup(redis_url, [{"k": "a"}])
        child = e["child"]
        fetched = await lease_one(child)
        retry = Outcome(OutcomeKind.RETRY, fetched.job.id, fetched.token, error="again")
        await QueueConsumer(child, "w", client).finish([retry])
        assert await _summaries(e["summary"]) == []
        await _end(child, OutcomeKind.COMPLETED, "7")
        (join,) = await _summaries(e["summary"])
        assert join.data["completed"] == 1 and join.data["results"][0]["result"] == 7
        await client.aclose()

    asyncio.run(main())


def test_fail_policy_fails_the_join_at_the_first_failed_child(redis_url: str) -> None:
    async def main() -> None:
        client, e = await _setup(redis_url, [{"k": "a"}, {"k": "b"}], policy="fail")
        await _end(e["child"], OutcomeKind.FAILED, "no")
        (join,) = await _summaries(e["summary"])
        assert join.state == "failed" and "child b1-a failed: no" in (join.error or "")
        await _end(e["child"], OutcomeKind.COMPLETED, "1")
        assert len(await _summaries(e["summary"])) == 1
        await client.aclose()

    asyncio.run(main())


def test_many_children_keep_the_join_under_its_cap(redis_url: str) -> None:
    """Past 256 KiB of results the join lists the remaining children by id only."""

    async def main() -> None:
        client, e = await _setup(redis_url, [{"k": str(i)} for i in range(40)])
        big = '"' + "x" * 10_000 + '"'
        for _ in range(40):
            await _end(e["child"], OutcomeKind.COMPLETED, big)
        (join,) = await _summaries(e["summary"])
        d = join.data
        assert d["completed"] == 40
        assert 20 <= len(d["results"]) < 40 and len(d["results"]) + len(d["omitted"]) == 40
        await client.aclose()

    asyncio.run(main())


def test_children_removed_wholesale_are_counted_so_the_join_fires(redis_url: str) -> None:
    """drain, clean and obliterate of the children's queue count each waiting, delayed or
    running child as removed (before, they left the join open for good)."""

    async def ended_by(operation: Any) -> dict[str, Any]:
        client, e = await _setup(redis_url, [{"k": "a"}, {"k": "b"}, {"k": "c"}])
        child = e["child"]
        await _end(child, OutcomeKind.COMPLETED, "1")  # b1-a, counted at its end
        running = await lease_one(child)  # b1-b runs (only obliterate --force removes it)
        await operation(child)
        if operation is not obliterate:  # b1-b ends as it would have without the operator
            done = Outcome(OutcomeKind.COMPLETED, "b1-b", running.token, result="2")
            assert await QueueConsumer(child, "w", client).finish([done]) == (1, 0, 0)
        joins = await _summaries(e["summary"])
        await client.flushall()
        await client.aclose()
        assert len(joins) == 1, "the join did not fire"
        return dict(joins[0].data)

    async def drain(child: QueueEngine) -> None:
        assert await child.drain() == 1

    async def clean(child: QueueEngine) -> None:
        assert await child.clean(0, 0, "waiting") == ["b1-c"]

    async def obliterate(child: QueueEngine) -> None:
        assert await child.obliterate(force=True) == 3

    async def main() -> None:
        for operation, why in [
            (drain, "drained by an operator"),
            (clean, "cleaned by an operator"),
            (obliterate, "removed with its queue (obliterate)"),
        ]:
            d = await ended_by(operation)
            removed = 2 if operation is obliterate else 1
            assert (d["total"], d["completed"], d["removed"]) == (3, 3 - removed, removed), d
            by_id = {x["id"]: x for x in d["results"]}
            assert by_id["b1-c"] == {"id": "b1-c", "state": "removed", "error": why}

    asyncio.run(main())


def test_a_join_failed_by_a_child_goes_to_its_queues_dead_letter_queue(
    redis_url: str, tmp_path: Any
) -> None:
    """`fail` adds the join failed for good; where its queue has a dead-letter queue, the join
    is dead-lettered like any job that failed for good, and the queue's worker copies it."""

    async def main() -> None:
        cfg = fan_out("fail")
        cfg["summary"] = dataclasses.replace(cfg["summary"], dead_letter="dead")
        cfg["dead"] = dataclasses.replace(cfg["summary"], name="dead", dead_letter=None)
        client = connect(redis_url)
        e = {n: QueueEngine(client, q, PREFIX) for n, q in cfg.items()}
        fetched = await lease_one(e["parent"], "b1")
        out = complete(fetched, {"items": [{"k": "a"}, {"k": "b"}]}, router(cfg, "parent"))
        assert await QueueConsumer(e["parent"], "w", client).finish([out]) == (1, 0, 0)
        await _end(e["child"], OutcomeKind.FAILED, "no")
        (join,) = await _summaries(e["summary"])
        assert join.state == "failed"
        assert await client.llen(e["summary"].keys.dlq_outbox) == 1  # written with the join
        config = make_config(tmp_path / "q.yaml", *cfg.values())
        async with inproc_worker(config, "summary", redis_url, lambda data: None):
            letters = await wait_for_async(
                lambda: e["dead"].list_jobs("waiting"), 20, message="the join dead-lettered"
            )
        (letter,) = letters
        assert letter.id == "sum-b1" and letter.data["queue"] == "summary"
        assert "child b1-a failed: no" in letter.data["error"]
        await client.aclose()

    asyncio.run(main())
