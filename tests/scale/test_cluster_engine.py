"""The engine on a real 3-primary Valkey Cluster (tests/helpers/topology.py).

The engine tests of tests/engine take ``redis_url``; imported here, they run once more with
``redis_url`` naming the Cluster (flushed before each test): priorities, delays, backoff,
timeouts, dead letters (``work`` and ``dead`` live on different primaries), add/add_bulk,
clean/drain/promote/remove/retry, real `cortexflow worker` processes sharing a rate limit,
pause, a kill -9 recovered after the lease, schedules (their definitions in `{prefix}`, their
states and jobs in each queue's slot), and several hosts running `cortexflow up` (the Python
API, a rate limit shared by hosts, `status`, a host killed with SIGKILL). Then what only a cluster has: queues spread over
every primary for all_stats and health, write_once on a queue's node, and the CLI.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from cortexflow.config.model import QueueConfig, Retention, RetentionRule
from cortexflow.engine import all_stats, connect, health, registry
from cortexflow.engine.cluster import ClusterClient, owner
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.queues.common import write_once
from cortexflow.worker.context import JobContext
from tests.engine.conftest import workers  # noqa: F401 (the fixture the process tests take)
from tests.engine.test_dead_letter_copier import (  # noqa: F401
    test_a_job_retried_by_an_operator_that_fails_again_is_a_second_dead_letter,
    test_an_entry_that_cannot_be_copied_is_set_aside_and_counted,
    test_an_oversized_dead_letter_does_not_wedge_the_outbox,
    test_stalled_failures_reach_the_dead_letter_queue_without_a_restart,
)
from tests.engine.test_finish_fetch import (  # noqa: F401
    test_a_finish_recorded_twice_is_counted_lost_and_leases_nothing_twice,
    test_finishing_and_leasing_the_next_job_is_one_script_call,
    test_the_combined_script_is_loaded_again_after_a_script_flush,
)
from tests.engine.test_ops import (  # noqa: F401 (collected: they run on the Cluster here)
    test_add_returns_id_and_same_id_adds_nothing,
    test_bad_options_are_refused,
    test_clean_drain_promote_remove_retry,
    test_list_jobs_orders_and_logs,
    test_obliterate_refuses_active_jobs_unless_forced,
    test_remove_on_complete_and_wait_finished_says_why_the_job_is_gone,
)
from tests.engine.test_processes import (  # noqa: F401
    test_chaos_sigkill_workers_loses_nothing,
    test_kill9_jobs_recovered_after_the_lease_without_new_traffic,
    test_pause_stops_starts_on_every_worker,
    test_rate_limit_holds_across_three_processes,
)
from tests.engine.test_progress_and_logs import (  # noqa: F401
    test_a_run_that_lost_its_lease_cannot_write,
    test_progress_and_logs_after_the_job_was_removed_resurrect_nothing,
)
from tests.engine.test_semantics import (  # noqa: F401
    test_backoff_gaps_follow_the_formula,
    test_delayed_jobs_never_run_early,
    test_handlers_add_follow_up_jobs_to_other_queues,
    test_priority_higher_first_fifo_within,
    test_stats_are_exact_under_load,
    test_timeout_fails_the_attempt_and_retries,
    test_unrecoverable_fails_at_once_and_exhausted_goes_to_dead_letter,
)
from tests.engine.test_state_machine import (  # noqa: F401
    test_job_lifecycle_state_machine,
)
from tests.helpers.jobs import PREFIX, engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import run_cli
from tests.helpers.project import RECORDER, write_project
from tests.helpers.topology import Cluster, emptied_url, running_cluster
from tests.scale.test_cluster_client import _replicas_linked
from tests.scale.test_hosts import (  # noqa: F401
    test_a_host_killed_with_sigkill_has_its_jobs_finished_by_the_other,
    test_status_lists_every_host,
    test_two_hosts_share_the_work_under_one_rate_limit,
)
from tests.schedules.test_engine import (  # noqa: F401
    config,
    project,
    test_a_tick_is_added_once_however_many_schedulers_race,
    test_api_upsert_list_trigger_remove,
    test_cli_lists_and_triggers,
    test_never_early_never_backwards_never_before_since,
    test_reconcile_upserts_the_file_removes_what_it_dropped_and_keeps_runtime_ones,
)
from tests.schedules.test_sync import (  # noqa: F401
    test_sync_manager_upserts_lists_triggers_and_removes,
)
from tests.supervisor.conftest import start_up  # noqa: F401

# One queue per primary (slots 0-5460, 5461-10922, 10923-16383 after `--cluster create`).
SPREAD = ["jobs", "dead", "work"]
KEEP_EVERYTHING = Retention(RetentionRule(None, None), RetentionRule(None, None))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def redis_url(cluster: Cluster) -> str:
    """The Cluster, emptied: what the imported engine tests run on here."""
    return emptied_url(cluster)


class EveryPrimary(RedisCluster):
    """A sync cluster client for the tests' own reads; KEYS asks every primary."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        return super().keys(pattern, target_nodes=RedisCluster.PRIMARIES, **kwargs)


@pytest.fixture
def redis_client(redis_url: str, cluster: Cluster) -> Iterator[RedisCluster]:
    client = EveryPrimary(host="127.0.0.1", port=cluster.nodes[0].port)
    yield client
    client.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_the_spread_queues_live_on_three_primaries(redis_url: str) -> None:
    async def main() -> set[str]:
        client = connect(redis_url)
        assert isinstance(client, ClusterClient)
        try:
            return {await owner(client, f"{{{PREFIX}:{q}}}:meta") for q in SPREAD}
        finally:
            await client.aclose()

    assert len(run(main())) == 3
    slots = [key_slot(f"{{{PREFIX}:{q}}}:meta".encode()) for q in SPREAD]
    assert len(set(slots)) == 3


def test_all_stats_and_health_over_every_primary(redis_url: str, tmp_path: Path) -> None:
    queues = [QueueConfig(name=q, handler="x:y") for q in SPREAD]

    async def handler(data: Any) -> None:
        return None

    async def main() -> None:
        client = connect(redis_url)
        try:
            for i, queue in enumerate(queues):
                async with engine_for(redis_url, queue) as e:
                    await e.add_bulk([("n", {"i": j}, None) for j in range(i + 1)])
            stats = await all_stats(client, PREFIX, SPREAD)
            assert [(s["queueName"], s["waiting"]) for s in stats] == [
                ("jobs", 1),
                ("dead", 2),
                ("work", 3),
            ]
            # Nothing expected: healthy. A supervisor expecting workers of two queues on two
            # primaries (a cross-slot MGET on one server's code path): unhealthy until a
            # worker of each is alive.
            assert (await health(client, PREFIX, SPREAD))["healthy"] is True
            for q in ("dead", "work"):
                await registry.set_expected(client, PREFIX, q, 1, 30)
            report = await health(client, PREFIX, SPREAD)
            assert report["queues"] == {"jobs": True, "dead": False, "work": False}
            cfg = make_config(tmp_path / "q.yaml", *queues)
            async with (
                inproc_worker(cfg, "dead", redis_url, handler),
                inproc_worker(cfg, "work", redis_url, handler),
            ):

                async def healthy() -> bool:
                    return bool((await health(client, PREFIX, SPREAD))["healthy"])

                await wait_for_async(healthy, 20, message="healthy with workers of both")

                async def drained() -> bool:
                    got = await all_stats(client, PREFIX, SPREAD)
                    return [s["completed"] for s in got] == [0, 2, 3]

                await wait_for_async(drained, 20, message="both queues' jobs completed")
            await registry.clear_expected(client, PREFIX, SPREAD)
        finally:
            await client.aclose()

    run(main())


def test_durable_adds_wait_on_the_queues_primary(redis_url: str) -> None:
    """durable_adds: the add and its WAITAOF go in one pipeline pinned to the queue's node
    (WAITAOF waits for its own connection's writes); the Cluster's nodes keep an AOF."""

    async def main() -> None:
        client = connect(redis_url)
        try:
            for name in SPREAD:
                queue = QueueConfig(name=name, handler="x:y")
                engine = QueueEngine(client, queue, PREFIX, durable_adds=True)
                assert await engine.add("n", {"v": 1}, JobOptions(job_id="a")) == "a"
                added = await engine.add_bulk([("n", {"v": i}, None) for i in range(20)])
                assert len(added) == 20
                assert (await engine.stats())["waiting"] == 21
        finally:
            await client.aclose()

    run(main())


def test_write_once_runs_on_the_queues_node(redis_url: str) -> None:
    async def main() -> None:
        client = connect(redis_url)
        engine = QueueEngine(client, QueueConfig(name="q", handler="-"), "cf")
        job = JobContext(
            engine, "t", id="j1", name="n", queue="q", attempt=1, priority=0,
            created_at=time.time(), data={}, rerun_window=60,
        )  # fmt: skip
        try:
            for tag in ("{cfdata:a}", "{cfdata:b}", "{cfdata:c}"):
                marker = f"{tag}:done:j1"

                def writes(pipe: Any, tag: str = tag) -> None:
                    pipe.incr(f"{tag}:count")

                assert await write_once(job, marker, writes) is True
                assert await write_once(job, marker, writes) is False
                assert await client.get(f"{tag}:count") == b"1"
                assert 0 < await client.ttl(marker) <= 60
        finally:
            await client.aclose()

    run(main())


def test_cli_enqueue_and_stats_on_a_cluster(redis_url: str, tmp_path: Path) -> None:
    cfg = write_project(
        tmp_path,
        """
        queues:
          jobs: {handler: rec:handle}
          dead: {handler: rec:handle}
          work: {handler: rec:handle}
    """,
        RECORDER,
    )
    for q in SPREAD:
        got = run_cli("enqueue", q, "-", "-f", str(cfg), "--redis-url", redis_url, input='{"x": 1}')
        assert got.returncode == 0, got.stderr
    got = run_cli(
        "enqueue", "work", "-", "--jsonl", "-f", str(cfg), "--redis-url", redis_url,
        input='{"x": 2}\n{"x": 3}\n',
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    got = run_cli("stats", "--json", "-f", str(cfg), "--redis-url", redis_url)
    assert got.returncode == 0, got.stderr
    waiting = {s["queueName"]: s["waiting"] for s in json.loads(got.stdout)}
    assert waiting == {"jobs": 1, "dead": 1, "work": 3}
    got = run_cli("stats", "-f", str(cfg), "--redis-url", redis_url)
    assert got.returncode == 0 and "work" in got.stdout, got.stderr


# -- a primary killed under load (3 primaries + 3 replicas) -----------------------------------


@pytest.mark.slow
def test_a_killed_primary_under_load_is_ridden_out(tmp_path: Path) -> None:
    """kill -9 of the primary serving a queue while a producer adds and an in-process worker
    runs its jobs: processing resumes by itself within ~10 s (node timeout 2 s), and every add
    that was acknowledged runs, except what asynchronous replication lost (counted, printed)."""
    topology = Cluster(tmp_path / "cluster", 3, 1)
    try:
        topology.start()
        wait_for(lambda: _replicas_linked(topology), 60, message="replicas never synced")
        result = asyncio.run(asyncio.wait_for(_load_and_kill(topology, tmp_path), 240))
    finally:
        topology.stop()
    print(
        f"\nfailover under load: {result['acked']} adds acknowledged, {result['refused']} "
        f"refused, {result['ran']} ran ({result['reruns']} reruns), {result['lost']} never "
        f"seen again; first job added after the kill ran {result['resumed']:.2f}s after it"
    )
    assert result["resumed"] < 12
    # Lost: only acknowledged adds the promoted replica had not received (a few ms of writes).
    assert result["lost"] <= result["acked"] * 0.05


async def _load_and_kill(topology: Cluster, tmp_path: Path) -> dict[str, Any]:
    url = topology.url()
    queue = QueueConfig(
        name="work", handler="x:y", concurrency=10, lease=5, retention=KEEP_EVERYTHING
    )
    starts: dict[str, float] = {}
    runs: list[str] = []

    async def handler(data: Any, job: Any) -> None:
        runs.append(job.id)
        starts.setdefault(job.id, time.monotonic())

    acked: dict[str, float] = {}
    refused = 0
    killed_at = 0.0
    cfg = make_config(tmp_path / "q.yaml", queue)
    async with engine_for(url, queue) as e, inproc_worker(cfg, "work", url, handler):
        client = e.client
        assert isinstance(client, ClusterClient)
        victim = await owner(client, e.keys.meta)
        loop_end = time.monotonic() + 16
        n = 0
        while time.monotonic() < loop_end:
            if not killed_at and time.monotonic() > loop_end - 12:
                next(x for x in topology.nodes if f"127.0.0.1:{x.port}" == victim).kill()
                killed_at = time.monotonic()
            ids = [f"j{n + i}" for i in range(10)]
            n += 10
            try:
                await e.add_bulk([("n", {}, JobOptions(job_id=i)) for i in ids])
            except Exception:  # a failover the client's retries did not span: not acknowledged
                refused += len(ids)
            else:
                now = time.monotonic()
                acked.update(dict.fromkeys(ids, now))
            await asyncio.sleep(0.05)  # the producer's pace, not a wait for a condition
        assert await owner(client, e.keys.meta) != victim

        async def settled() -> bool:
            missing = [i for i in acked if i not in starts]
            return not missing or all([await e.get_job(i) is None for i in missing[:50]])

        await wait_for_async(settled, 90, message="acknowledged jobs still waiting to run")
        lost = [i for i in acked if i not in starts and await e.get_job(i) is None]
    after = [starts[i] for i, t in acked.items() if t > killed_at and i in starts]
    return {
        "acked": len(acked),
        "refused": refused,
        "ran": len(set(runs)),
        "reruns": len(runs) - len(set(runs)),
        "lost": len(lost),
        "resumed": min(after) - killed_at if after else float("inf"),
    }
