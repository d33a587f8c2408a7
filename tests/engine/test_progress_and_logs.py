"""Progress and log lines are written only by the run that owns the job (case 7 of the engine
hardening): a removed job is never resurrected, a run that lost its lease is told so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async


def test_progress_and_logs_after_the_job_was_removed_resurrect_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    started = asyncio.Event()
    go_on = asyncio.Event()
    errors: list[str] = []

    async def handler(data: Any, job: Any) -> None:
        await job.update_progress(10)
        await job.log("started")
        started.set()
        await go_on.wait()
        for write in (lambda: job.update_progress(50), lambda: job.log("after removal")):
            try:
                await write()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    async def main() -> None:
        q = QueueConfig(name="gone", handler="x:y")
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="p"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "gone", redis_url, handler
            ):
                await asyncio.wait_for(started.wait(), 20)
                job = await e.get_job("p")
                assert job is not None and job.progress == 10
                assert await e.get_logs("p") == ["started"]
                await e.obliterate(force=True)  # an operator removes the queue meanwhile
                go_on.set()
                await wait_for_async(
                    lambda: _true(len(errors) == 2), 20, message="both writes answered"
                )
            assert not await e.client.exists(e.keys.job("p"))
            assert await e.get_logs("p") == []
            assert all(err.startswith("LeaseLostError: job 'p'") for err in errors), errors
            # The id is free again: adding it adds a job.
            await e.add("n", {}, JobOptions(job_id="p"))
            assert (await e.stats())["waiting"] == 1

    asyncio.run(main())


async def _true(value: bool) -> bool:
    return value


def test_a_run_that_lost_its_lease_cannot_write(redis_url: str) -> None:
    from cortexflow.engine.consumer import QueueConsumer
    from cortexflow.errors import LeaseLostError
    from cortexflow.worker.context import JobContext

    async def main() -> None:
        q = QueueConfig(name="lost", handler="x:y", lease=0.1)
        async with engine_for(redis_url, q) as e:
            await e.add("n", {}, JobOptions(job_id="l"))
            first = QueueConsumer(e, "w1", e.client)
            (old,) = (await first.fetch(1)).jobs
            await asyncio.sleep(0.15)  # the lease runs out; another worker takes the job
            (new,) = (await QueueConsumer(e, "w2", e.client).fetch(1)).jobs
            assert new.token != old.token
            ctx = JobContext(
                e, old.token, id="l", name="n", queue="lost", attempt=1, priority=0,
                created_at=0.0, data={},
            )  # fmt: skip
            for call in (ctx.update_progress(1), ctx.log("late")):
                try:
                    await call
                except LeaseLostError as exc:
                    assert "no longer held by this run" in str(exc)
                else:
                    raise AssertionError("a stale run wrote to the job")
            owner = JobContext(
                e, new.token, id="l", name="n", queue="lost", attempt=2, priority=0,
                created_at=0.0, data={},
            )  # fmt: skip
            await owner.update_progress({"pct": 5})
            job = await e.get_job("l")
            assert job is not None and job.progress == {"pct": 5}

    asyncio.run(main())
