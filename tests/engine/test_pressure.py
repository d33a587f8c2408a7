"""The engine under pressure, call by call (the process-level tests are tests/worker/
test_full_server.py and test_slow_server.py; docs/engine.md "Redis under pressure").

- A full server (maxmemory below what it uses, noeviction) refuses an add with ServerFullError
  and an outcome with OOM, but renews leases (heartbeat.lua is `allow-oom`), with the default
  lease and from the lease thread's blocking client alike.
- The lease clock: after a gap of more than lease/2 in served renewals, fetch recovers no
  stalled job for lease/3 (the live owner renews meanwhile); a dead owner's job is recovered
  after that; with another holder renewing all along, there is no gap and recovery is at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.exceptions import OutOfMemoryError

from cortexflow import ServerFullError
from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.renewal import SyncRenewer
from tests.helpers.jobs import PREFIX, engine_for


def test_a_full_server_refuses_adds_and_outcomes_but_renews_leases(
    tmp_path: Path, private_server: Callable[..., ServerProcess]
) -> None:
    asyncio.run(_full_server(tmp_path, private_server))


async def _full_server(tmp_path: Path, private_server: Callable[..., ServerProcess]) -> None:
    server = private_server(tmp_path / "data", appendonly=False)
    server.start()
    admin = redis.Redis.from_url(server.url)
    queue = QueueConfig(name="q", handler="x:y")  # the default lease, 30 s
    try:
        async with engine_for(server.url, queue) as e:
            await e.add("n", {}, JobOptions(job_id="j"))
            consumer = QueueConsumer(e, "w", e.client)
            (leased,) = (await consumer.fetch(1)).jobs
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) // 2)

            with pytest.raises(ServerFullError) as caught:
                await e.add("n", {}, JobOptions(job_id="k"))
            assert caught.value.used and caught.value.maxmemory
            assert admin.exists(e.keys.job_prefix + "k") == 0
            outcome = Outcome(OutcomeKind.COMPLETED, "j", leased.token, result="1")
            with pytest.raises(OutOfMemoryError):
                await consumer.finish([outcome])

            seconds, micros = admin.time()
            sent_ms = seconds * 1000 + micros // 1000
            assert await consumer.heartbeat([("j", leased.token)]) == []
            renewed = admin.zscore(e.keys.active, "j")
            assert renewed is not None and renewed >= sent_ms + queue.lease * 1000
            renewer = SyncRenewer(server.url, PREFIX, "q", queue.lease, 1.0)
            try:
                assert renewer.renew([("j", leased.token)]) == set()
            finally:
                renewer.close()

            admin.config_set("maxmemory", 0)
            assert (await consumer.finish([outcome]))[0] == 1
            assert admin.zscore(e.keys.completed, "j") is not None
    finally:
        admin.close()
        server.stop()


LEASE = 1.0


def test_after_a_gap_in_renewals_recovery_waits_for_the_live_owner(redis_url: str) -> None:
    asyncio.run(_gap(redis_url))


async def _gap(redis_url: str) -> None:
    queue = QueueConfig(name="q", handler="x:y", lease=LEASE, max_stalls=5)
    async with engine_for(redis_url, queue) as e:
        owner, other = QueueConsumer(e, "a", e.client), QueueConsumer(e, "b", e.client)
        await e.add("n", {}, JobOptions(job_id="j"))
        (leased,) = (await owner.fetch(1)).jobs
        held = [("j", leased.token)]
        assert await owner.heartbeat(held) == []

        await asyncio.sleep(LEASE * 1.3)  # no renewal served: as if the server had stalled
        first = await other.fetch(1)
        assert first.jobs == [], "a live owner's job was taken over right after the gap"
        # a fetch's lease (and with it lease/3) is jittered up to 1.2x the lease
        assert first.wait is not None and 0 < first.wait <= 1.2 * LEASE / 3 + 0.05
        assert await owner.heartbeat(held) == []  # the owner's renewal gets through
        await asyncio.sleep(1.2 * LEASE / 3 + 0.05)
        assert (await other.fetch(1)).jobs == []  # renewed: nothing to recover

        # The owner dies: after the next gap and the settling, its job is recovered.
        await asyncio.sleep(LEASE * 1.3)
        settling = await other.fetch(1)
        assert settling.jobs == [] and settling.wait is not None
        await asyncio.sleep(settling.wait + 0.05)
        (recovered,) = (await other.fetch(1)).jobs
        assert recovered.job.id == "j" and recovered.token != leased.token
        assert await owner.heartbeat(held) == ["j"]


def test_with_another_holder_renewing_a_dead_owners_job_is_recovered_at_once(
    redis_url: str,
) -> None:
    asyncio.run(_other_holder(redis_url))


async def _other_holder(redis_url: str) -> None:
    queue = QueueConfig(name="q", handler="x:y", lease=LEASE, max_stalls=5)
    async with engine_for(redis_url, queue) as e:
        dead, alive, idle = (QueueConsumer(e, n, e.client) for n in "abc")
        await e.add_bulk([("n", {}, JobOptions(job_id=i)) for i in ("j", "k")])
        (j,) = (await dead.fetch(1)).jobs
        (k,) = (await alive.fetch(1)).jobs
        loop = asyncio.get_running_loop()
        until = loop.time() + LEASE * 1.3
        while loop.time() < until:  # the live holder renews every lease/4; `dead` never does
            assert await alive.heartbeat([("k", k.token)]) == []
            await asyncio.sleep(LEASE / 4)
        # A renewal right before the fetch: the server's clock runs (no settling) only while
        # renewals come less than lease/2 apart, and a stall of this process between the
        # loop's last renewal and the fetch must not look like a server stall.
        assert await alive.heartbeat([("k", k.token)]) == []
        (recovered,) = (await idle.fetch(1)).jobs
        assert recovered.job.id == "j" and j.token != recovered.token
