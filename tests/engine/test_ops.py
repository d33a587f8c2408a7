"""Queue operations through the engine against the real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import JobOptions
from cortexflow.errors import CortexflowError, PayloadError, UsageError
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

SCHEMA = {
    "type": "object",
    "required": ["userId", "title"],
    "properties": {"userId": {"type": "string"}, "title": {"type": "string", "maxLength": 5}},
}


def q(**kw: Any) -> QueueConfig:
    return QueueConfig(**{"name": "jobs", "handler": "x:y", **kw})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_add_returns_id_and_same_id_adds_nothing(redis_url: str) -> None:
    async def main() -> None:
        async with engine_for(redis_url, q()) as e:
            first = await e.add("a", {"n": 1}, JobOptions(job_id="order-1"))
            again = await e.add("a", {"n": 2}, JobOptions(job_id="order-1"))
            assert first == again == "order-1"
            job = await e.get_job("order-1")
            assert job is not None and job.data == {"n": 1}
            assert (await e.stats())["waiting"] == 1
            generated = await e.add("a", {"n": 3})
            assert generated != "order-1" and len(generated) == 22 and generated.isalnum()

    run(main())


def test_add_bulk_is_all_or_nothing(redis_url: str, redis_client: Any) -> None:
    async def main() -> None:
        async with engine_for(redis_url, q(payload_schema_doc=SCHEMA)) as e:
            good = {"userId": "u1", "title": "hi"}
            with pytest.raises(PayloadError) as info:
                await e.add_bulk([("n", good, None), ("n", {"userId": 5}, None), ("n", good, None)])
            pointers = [p for p, _ in info.value.violations]
            assert pointers == ["/1", "/1/userId"]  # missing title, wrong type: every violation
            assert (await e.stats())["waiting"] == 0
            ids = await e.add_bulk([("n", good, None)] * 3)
            assert len(set(ids)) == 3 and (await e.stats())["waiting"] == 3

    run(main())
    # Nothing but the three jobs, their indexes and the queue's meta exist.
    assert all(k.startswith(b"{cortexflow:jobs}") for k in redis_client.keys("*"))


def test_invalid_payload_lists_every_violation_and_writes_nothing(
    redis_url: str, redis_client: Any
) -> None:
    async def main() -> None:
        async with engine_for(redis_url, q(payload_schema_doc=SCHEMA)) as e:
            with pytest.raises(PayloadError) as info:
                await e.add("n", {"title": "far too long", "extra": 1})
            found = dict(info.value.violations)
            assert set(found) == {"", "/title"}
            assert "userId" in found[""] and "too long" in found["/title"]
            with pytest.raises(PayloadError):
                await e.add("n", ["not", "an", "object"])
            with pytest.raises(PayloadError):
                await e.add("n", {"x": float("nan")})

    run(main())
    assert redis_client.dbsize() == 0


def test_bad_options_are_refused(redis_url: str) -> None:
    async def main() -> None:
        async with engine_for(redis_url, q()) as e:
            for opts in (
                JobOptions(priority=-1),
                JobOptions(priority=1_000_001),
                JobOptions(attempts=0),
                JobOptions(job_id="has space"),
                JobOptions(job_id="a:b"),
                JobOptions(delay=-1),
            ):
                with pytest.raises(UsageError):
                    await e.add("n", {}, opts)
            assert (await e.stats())["waiting"] == 0

    run(main())


def test_clean_drain_promote_remove_retry(redis_url: str, tmp_path: Path) -> None:
    async def boom(data: Any) -> None:
        raise ValueError("no")

    async def main() -> None:
        queue = q(attempts=1)
        async with engine_for(redis_url, queue) as e:
            await e.add_bulk([("n", {"i": i}, None) for i in range(5)])
            await e.add("n", {}, JobOptions(job_id="later", delay=3600))
            await e.add("n", {}, JobOptions(job_id="later2", delay=3600))
            assert (await e.stats())["delayed"] == 2
            # promote: delayed -> waiting now
            assert await e.promote("later") is True
            assert await e.promote("later") is False
            assert (await e.get_job("later")).state == "waiting"  # type: ignore[union-attr]
            # remove
            assert await e.remove("later") is True and await e.remove("later") is False
            # drain waiting only, then with delayed
            assert await e.drain() == 5
            s = await e.stats()
            assert (s["waiting"], s["delayed"]) == (0, 1)
            assert await e.drain(delayed=True) == 1
            # fail two jobs, retry one by id then all
            await e.add_bulk([("n", {"i": i}, JobOptions(job_id=f"f{i}")) for i in range(3)])
            cfg = make_config(tmp_path / "queues.yaml", queue)
            async with inproc_worker(cfg, "jobs", redis_url, boom):
                await wait_for_async(lambda: _failed(e, 3), 10, message="3 failed")
            failed = await e.get_job("f0")
            assert (
                failed is not None
                and failed.error == "ValueError: no"
                and failed.attempts_made == 1
            )
            assert "Traceback" in (failed.stacktrace or "")
            assert await e.retry(["f0"]) == ["f0"]
            j = await e.get_job("f0")
            assert (
                j is not None and j.state == "waiting" and j.attempts_made == 0 and j.error is None
            )
            assert sorted(await e.retry()) == ["f1", "f2"]
            assert (await e.stats())["waiting"] == 3
            # clean: completed/failed older than grace
            await e.drain()
            await e.add_bulk([("n", {}, JobOptions(job_id=f"c{i}")) for i in range(4)])
            async with inproc_worker(cfg, "jobs", redis_url, boom):
                await wait_for_async(lambda: _failed(e, 4), 10, message="4 failed")
            assert await e.clean(3600, 0, "failed") == []  # none older than an hour
            await asyncio.sleep(0.05)  # time passing is the condition: older than 10 ms
            removed = await e.clean(0.01, 3, "failed")
            assert len(removed) == 3 and (await e.stats())["failed"] == 1
            with pytest.raises(UsageError):
                await e.clean(0, 0, "active")

    run(main())


async def _failed(e: Any, n: int) -> bool:
    return bool((await e.stats())["failed"] == n)


def test_obliterate_refuses_active_jobs_unless_forced(
    redis_url: str, tmp_path: Path, redis_client: Any
) -> None:
    gate = asyncio.Event()

    async def slow(data: Any) -> None:
        await gate.wait()

    async def main() -> None:
        queue = q()
        async with engine_for(redis_url, queue) as e:
            await e.add_bulk([("n", {"i": i}, None) for i in range(30)])
            cfg = make_config(tmp_path / "queues.yaml", queue)
            async with inproc_worker(cfg, "jobs", redis_url, slow):
                await wait_for_async(lambda: _active(e, 10), 10, message="10 active")
                with pytest.raises(CortexflowError, match="active"):
                    await e.obliterate()
                assert (await e.stats())["waiting"] == 20
                assert await e.obliterate(force=True) == 30
                gate.set()
            s = await e.stats()
            assert (s["waiting"], s["active"], s["completed"]) == (0, 0, 0)

    run(main())
    assert not [
        k
        for k in redis_client.keys("{cortexflow:jobs}:*")
        if not k.endswith((b":workers", b":winfo"))
    ]


async def _active(e: Any, n: int) -> bool:
    return bool((await e.stats())["active"] == n)


def test_remove_refuses_an_active_job(redis_url: str, tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def slow(data: Any) -> None:
        await gate.wait()

    async def main() -> None:
        queue = q()
        async with engine_for(redis_url, queue) as e:
            await e.add("n", {}, JobOptions(job_id="busy"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "jobs", redis_url, slow
            ):
                await wait_for_async(lambda: _active(e, 1), 10)
                with pytest.raises(CortexflowError, match="active"):
                    await e.remove("busy")
                gate.set()

    run(main())


def test_list_jobs_orders_and_logs(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any, job: Any) -> dict[str, Any]:
        await job.update_progress(50)
        await job.log("half way")
        return {"double": data["i"] * 2}

    async def main() -> None:
        queue = q()
        async with engine_for(redis_url, queue) as e:
            await e.add("low", {"i": 1}, JobOptions(job_id="low", priority=1))
            await e.add("high", {"i": 2}, JobOptions(job_id="high", priority=9))
            assert [j.id for j in await e.list_jobs("waiting")] == ["high", "low"]
            with pytest.raises(UsageError):
                await e.list_jobs("paused")
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "jobs", redis_url, handler
            ):
                done = await e.wait_finished("low", 10)
            assert done is not None and done.state == "completed" and done.result == {"double": 2}
            assert done.progress == 50 and await e.get_logs("low") == ["half way"]
            assert (
                done.processed_at
                and done.finished_at
                and done.created_at <= done.processed_at <= done.finished_at
            )
            assert {j.id for j in await e.list_jobs("completed")} == {"low", "high"}

    run(main())


def test_remove_on_complete_and_wait_finished_says_why_the_job_is_gone(
    redis_url: str, tmp_path: Path
) -> None:
    from cortexflow.errors import JobNotFoundError

    started = asyncio.Event()
    gate = asyncio.Event()

    async def handler(data: Any) -> str:
        started.set()
        await gate.wait()
        return "done"

    async def main() -> None:
        queue = q()
        async with engine_for(redis_url, queue) as e:
            await e.add("n", {}, JobOptions(job_id="gone", remove_on_complete=True))
            await e.add("n", {}, JobOptions(job_id="kept"))
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", queue), "jobs", redis_url, handler
            ):
                await started.wait()
                waiter = asyncio.create_task(e.wait_finished("gone", 10))
                # A head start: the waiter must have seen the job before it finishes (its first
                # read is a local round trip, not observable from here).
                await asyncio.sleep(0.1)
                gate.set()
                with pytest.raises(JobNotFoundError, match="removed at once"):
                    await waiter
                kept = await e.wait_finished("kept", 10)
            assert kept is not None and kept.result == "done"
            assert await e.get_job("gone") is None
            assert [j.id for j in await e.list_jobs("completed")] == ["kept"]
            with pytest.raises(JobNotFoundError, match="no job"):
                await e.wait_finished("never", 1)

    run(main())
