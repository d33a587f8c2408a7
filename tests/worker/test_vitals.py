"""The worker's watchdog (worker/vitals.py): a part the worker depends on that dies is noticed
within lease/3, and the worker stops taking jobs instead of running on without it (real
server, in-process worker; the process side, exit 71 under `up`, is in
tests/supervisor/test_default_path.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import JobOptions
from cortexflow.worker.queue_worker import QueueWorker
from cortexflow.worker.vitals import check_interval
from tests.helpers.jobs import engine_for, make_config
from tests.helpers.poll import wait_for_async

pytestmark = pytest.mark.transports

LEASE = 6.0  # long enough that lease/3 (+1 s of noise) is well short of a whole lease


async def _started(tmp_path: Path, url: str) -> QueueWorker:
    queue = QueueConfig(name="vital", handler="x:y", lease=LEASE)

    async def handler(data: Any) -> str:
        await asyncio.sleep(data.get("sleep", 0))
        return "ok"

    worker = QueueWorker(make_config(tmp_path / "q.yaml", queue), "vital", url, handler=handler)
    await worker.start()
    return worker


@pytest.mark.parametrize("part", ["finisher (records outcomes)", "registry heartbeat"])
def test_a_dead_background_task_stops_the_worker_within_lease_3(
    tmp_path: Path, redis_url: str, part: str
) -> None:
    async def main() -> None:
        worker = await _started(tmp_path, redis_url)
        assert worker.broker is not None
        tasks = {**worker.broker.background(), "registry heartbeat": worker._beat}
        task = tasks[part]
        assert task is not None
        killed = time.monotonic()
        task.cancel()
        await wait_for_async(lambda: _ended(worker), 10, message="the worker never noticed")
        took = time.monotonic() - killed
        assert took <= LEASE / 3 + check_interval(LEASE) + 1.0, took
        assert worker.fault is not None and part in worker.fault
        assert worker.failed and worker.state == "stopped"
        # It takes no job any more: one added now stays waiting.
        queue = worker.queue
        async with engine_for(redis_url, queue) as e:
            await e.add("n", {}, JobOptions(job_id="after"))
            await asyncio.sleep(1.0)
            job = await e.get_job("after")
            assert job is not None and job.state == "waiting", job

    asyncio.run(main())


def test_a_dead_lease_thread_stops_the_worker_and_its_job_is_not_given_back(
    tmp_path: Path, redis_url: str
) -> None:
    """The job whose lease nobody renews is left to stall (run again after its lease), never
    handed to waiting while its run may still be going."""

    async def main() -> None:
        worker = await _started(tmp_path, redis_url)
        keeper = worker.keeper
        assert keeper is not None
        async with engine_for(redis_url, worker.queue) as e:
            await e.add("n", {"sleep": 30}, JobOptions(job_id="long"))
            await wait_for_async(lambda: _active(e), 10, message="the job never started")

            def broken(leases: Any) -> set[str]:
                raise RuntimeError("injected into the lease thread")

            keeper._renewer.renew = broken  # type: ignore[method-assign]
            await wait_for_async(lambda: _ended(worker), 10, message="the worker never noticed")
            assert worker.fault is not None and "lease renewal thread died" in worker.fault
            assert "injected into the lease thread" in worker.fault
            job = await e.get_job("long")
            assert job is not None and job.state == "active", job

    asyncio.run(main())


async def _ended(worker: QueueWorker) -> bool:
    return worker.state == "stopped"


async def _active(e: Any) -> bool:
    return bool((await e.stats())["active"] == 1)


def test_health_and_status_say_so_while_lease_renewals_fail(tmp_path: Path, redis_url: str) -> None:
    """Renewals failing (a Redis error the lease thread rides out, here injected): the worker
    keeps running, and health stops calling the queue healthy until they work again."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from cortexflow.api.manager import QueueManager
    from cortexflow.cli.render import health_text

    async def main() -> None:
        worker = await _started(tmp_path, redis_url)
        keeper = worker.keeper
        assert keeper is not None
        renew = keeper._renewer.renew

        def failing(leases: Any) -> set[str]:
            raise RedisConnectionError("injected: renewals fail")

        manager = QueueManager(worker.config, redis_url=redis_url)
        try:
            assert (await manager.health_check())["healthy"] is True
            keeper._renewer.renew = failing  # type: ignore[method-assign]
            report: dict[str, Any] = {}

            async def unhealthy() -> bool:
                report.update(await manager.health_check())
                return not report["healthy"]

            await wait_for_async(unhealthy, 10, message="health never said so")
            assert report["queues"] == {"vital": False}
            assert report["leaseRenewalFailing"] == {"vital": 1}
            assert "lease renewal failing on 1 worker(s)" in health_text(report)
            assert worker.state == "running" and worker.fault is None  # an outage: ridden out
            keeper._renewer.renew = renew  # type: ignore[method-assign]

            async def healthy() -> bool:
                return bool((await manager.health_check())["healthy"])

            await wait_for_async(healthy, 10, message="health never recovered")
        finally:
            await manager.close()
            await worker.stop(2)

    asyncio.run(main())
