"""Pipelines on a real 3-primary Valkey Cluster: each queue is its own slot, so the finish call
writes hand-offs to an outbox in the parent's slot and the copier moves them (never wedged,
never duplicated, never lost); a join fires through the children queue's outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from cortexflow.config.model import Join, QueueConfig, Route
from cortexflow.engine import connect
from cortexflow.engine.cluster import owner
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import HandoffCopier
from cortexflow.engine.health import health
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import PREFIX, inproc_worker, make_config
from tests.helpers.poll import wait_for_async
from tests.helpers.procs import Proc
from tests.helpers.topology import Cluster, emptied_url, running_cluster
from tests.pipelines.conftest import complete, lease_one, router
from tests.pipelines.test_faults import run_faults

# One queue per primary (as tests/scale/test_cluster_engine.py spreads them).
PARENT, CHILD, SUMMARY = "jobs", "work", "dead"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def redis_url(cluster: Cluster) -> str:
    return emptied_url(cluster)


def configs(*routes: Route) -> dict[str, QueueConfig]:
    return {
        PARENT: QueueConfig(name=PARENT, handler="x:y", routes=routes),
        CHILD: QueueConfig(name=CHILD, handler="x:y"),
        SUMMARY: QueueConfig(name=SUMMARY, handler="x:y"),
    }


def test_the_hand_off_goes_through_the_outbox_and_is_copied_once(redis_url: str) -> None:
    async def main() -> None:
        cfg = configs(Route(to=CHILD, name="go", for_each="/xs", id=("$id", "/k")))
        client = connect(redis_url)
        e = {n: QueueEngine(client, q, PREFIX) for n, q in cfg.items()}
        assert len({await owner(client, e[n].keys.meta) for n in cfg}) == 3  # type: ignore[arg-type]
        fetched = await lease_one(e[PARENT], "p1")
        out = complete(fetched, {"xs": [{"k": "a"}, {"k": "b"}]}, router(cfg, PARENT, outbox=True))
        assert await QueueConsumer(e[PARENT], "w", client).finish([out]) == (1, 0, 0)
        parent = await e[PARENT].get_job("p1")
        assert parent is not None and parent.state == "completed"
        assert parent.children == ((CHILD, "p1-a"), (CHILD, "p1-b"))
        (entry,) = await client.lrange(e[PARENT].keys.next_outbox, 0, -1)
        assert await e[CHILD].get_job("p1-a") is None  # not copied yet
        copier = HandoffCopier(e[PARENT])
        assert await copier.copy() == 1
        assert await client.llen(e[PARENT].keys.next_outbox) == 0
        a = await e[CHILD].get_job("p1-a")
        assert a is not None and a.state == "waiting" and a.parent == (PARENT, "p1")
        # A copy repeated (a copier that died before removing the entry) adds nothing.
        await client.rpush(e[PARENT].keys.next_outbox, entry)
        assert await copier.copy() == 1
        assert await client.zcard(e[CHILD].keys.wait) == 2
        # An entry its target refuses is set aside and counted; the next one is copied.
        bad = json.loads(entry)
        bad[3][0][0] = ""  # an empty job id
        await client.rpush(e[PARENT].keys.next_outbox, json.dumps(bad), b"not json", entry)
        assert await copier.copy() == 1
        assert await client.llen(e[PARENT].keys.next_failed) == 2
        assert (await e[PARENT].stats())["handoffsNotCopied"] == 2
        report = await health(client, PREFIX, [PARENT, CHILD])
        assert report["handoffsNotCopied"] == {PARENT: 2}
        await client.aclose()

    asyncio.run(main())


def test_fan_out_and_join_across_three_primaries_with_workers(
    redis_url: str, tmp_path: Path
) -> None:
    join = Join(to=SUMMARY, name="sum")
    route = Route(to=CHILD, name="item", for_each="/xs", id=("$id", "/k"), join=join)
    cfg = configs(route)
    summaries: list[Any] = []

    async def fan(data: Any) -> Any:
        return {"xs": [{"k": str(i)} for i in range(data["n"])]}

    async def item(data: Any) -> Any:
        return {"k": data["k"]}

    async def summarise(data: Any) -> Any:
        summaries.append(data)
        return None

    async def main() -> None:
        client = connect(redis_url)
        config = make_config(tmp_path / "q.yaml", *cfg.values())
        parent = QueueEngine(client, cfg[PARENT], PREFIX)
        await parent.add_bulk([("b", {"n": n}, JobOptions(job_id=f"b{n}")) for n in (0, 1, 5)])
        async with (
            inproc_worker(config, PARENT, redis_url, fan),
            inproc_worker(config, CHILD, redis_url, item),
            inproc_worker(config, SUMMARY, redis_url, summarise),
        ):

            async def joined() -> bool:
                return len(summaries) >= 3

            await wait_for_async(joined, 30, message=lambda: f"3 summaries, got {summaries}")
            await asyncio.sleep(1.5)  # a copier pass more: nothing is added twice
        by_parent = {s["parent"][1]: s for s in summaries}
        assert sorted(by_parent) == ["b0", "b1", "b5"] and len(summaries) == 3
        assert by_parent["b0"]["total"] == 0 and by_parent["b0"]["results"] == []
        assert by_parent["b5"]["completed"] == 5
        assert sorted(r["result"]["k"] for r in by_parent["b5"]["results"]) == list("01234")
        await client.aclose()

    asyncio.run(main())


@pytest.mark.slow
def test_fan_outs_and_joins_survive_kill_9_on_the_cluster(
    cluster: Cluster,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
) -> None:
    """tests/pipelines/test_faults.py on the Cluster (every hand-off and join through the
    outboxes): kill -9 of workers, and of a primary (AOF) restarted."""
    monkeypatch.setenv("TEST_RUNS_FILE", str(tmp_path / "runs.jsonl"))
    client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    run_faults(tmp_path, redis_url, workers, cluster.nodes, client)
