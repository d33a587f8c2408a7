"""A Sentinel failover under load: the primary is killed with SIGKILL while `cortexflow up`
processes jobs, the sentinels promote the replica, and the workers carry on by themselves
(same processes, no restart): every job added before the kill, replicated, ends completed."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cortexflow.api.sync import SyncQueueManager
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc
from tests.helpers.topology import SentinelGroup

pytestmark = pytest.mark.slow
BEFORE = 2000  # jobs added before the kill: several seconds of work, so the kill lands mid-way

QUEUES_YAML = """\
version: 1
queues:
  work:
    handler: failhandlers:work
    concurrency: 5
    attempts: 5
    backoff: {type: fixed, delay: 200ms}
    lease: 3s
    retention: {completed: {age: 1h, count: 100000}}
"""

HANDLERS = textwrap.dedent(
    """
    import asyncio


    async def work(data):
        await asyncio.sleep(0.02)
        return {"n": data["n"]}
    """
)


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "redis")
    try:
        yield group.start()
    finally:
        group.stop()


def _replication(primary_port: int) -> tuple[int, list[int]]:
    """The primary's replication offset, and each replica's acknowledged offset."""
    primary = redis.Redis(host="127.0.0.1", port=primary_port)
    try:
        info = primary.info("replication")
    finally:
        primary.close()
    replicas = [v for k, v in info.items() if re.fullmatch(r"slave\d+", k)]
    return int(info["master_repl_offset"]), [int(r["offset"]) for r in replicas]


def test_workers_ride_out_a_sentinel_failover(
    tmp_path: Path, sentinels: SentinelGroup, start_up: Callable[..., Proc]
) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "failhandlers.py").write_text(HANDLERS)
    config = project / "queues.yaml"
    config.write_text(QUEUES_YAML)
    url = sentinels.url()
    up = start_up(project, "--redis-url", url)
    up.wait_for(r"work\.0 \(pid \d+\) ready", 60)
    worker_pid = up.child_pid("work.0")

    with SyncQueueManager(config, url) as manager:
        before = manager.add_bulk("work", [{"name": "w", "data": {"n": i}} for i in range(BEFORE)])
        wait_for(lambda: manager.get_queue_stats("work")["completed"] >= 50, timeout=30)
        old = sentinels.primary_port()
        assert old is not None
        # every write made so far (the adds included) reached the replica: the kill can lose
        # only what the workers write after this point, which they redo (asynchronous
        # replication; see docs/deploy.md)
        target, _ = _replication(old)
        wait_for(lambda: min(_replication(old)[1], default=-1) >= target, timeout=20)
        done_at_kill = manager.get_queue_stats("work")["completed"]
        killed_at = time.monotonic()
        sentinels.server_on(old).kill()  # SIGKILL, mid-processing
        new = sentinels.wait_promoted(old)
        promoted_in = time.monotonic() - killed_at

        def added_after() -> list[str] | None:
            try:
                return manager.add_bulk(
                    "work", [{"name": "w", "data": {"n": 1000 + i}} for i in range(100)]
                )
            except Exception:
                return None  # the client is still finding the new primary

        after = wait_for(added_after, timeout=30)
        wait_for(lambda: manager.get_queue_stats("work")["completed"] == BEFORE + 100, timeout=90)
        resumed_in = time.monotonic() - killed_at
        stats = manager.get_queue_stats("work")

        async def states(ids: list[str]) -> list[str]:
            engine = manager.get_queue("work")
            return [(j.state if j else "lost") for j in [await engine.get_job(i) for i in ids]]

        final = manager.run(states([*before, *after]))  # type: ignore[list-item]
    assert final.count("completed") == BEFORE + 100, {s: final.count(s) for s in set(final)}
    assert stats["failed"] == 0 and stats["waiting"] == 0 and stats["active"] == 0, stats
    # the same worker process did it all: nothing was restarted
    assert up.child_pid("work.0") == worker_pid
    assert len(re.findall(r"work\.0 started", up.err())) == 1, up.err()[-3000:]
    assert new != old
    print(
        f"\nfailover: killed with {done_at_kill}/{BEFORE} done, promoted in {promoted_in:.1f}s, "
        f"all {BEFORE + 100} jobs done {resumed_in:.1f}s after the kill"
    )
