"""The worker's steady-state path is one script call: record outcomes and lease the next jobs
together (finish_fetch), no pipeline of two scripts."""

from __future__ import annotations

import asyncio
from typing import Any

from cortexflow.config.model import QueueConfig
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from tests.helpers.jobs import engine_for


async def _script_calls(client: Any) -> dict[str, int]:
    """Calls per command the server counted so far (INFO commandstats), scripts and others."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_finishing_and_leasing_the_next_job_is_one_script_call(redis_url: str) -> None:
    async def main() -> None:
        q = QueueConfig(name="onecall", handler="x:y", lease=30.0)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {}, JobOptions(job_id=f"j{i}")) for i in range(4)])
            c = QueueConsumer(e, "w", e.client)
            (first,) = (await c.fetch(1)).jobs
            # The first call loads the script (NOSCRIPT, SCRIPT LOAD, EVALSHA); count the next.
            done = Outcome(OutcomeKind.COMPLETED, first.job.id, first.token, result="1")
            _, warm = await c.finish_and_fetch([done], 1)
            assert warm is not None and [f.job.id for f in warm.jobs] == ["j1"]
            second = warm.jobs[0]
            done = Outcome(OutcomeKind.COMPLETED, second.job.id, second.token, result="1")
            before = await _script_calls(e.client)
            (recorded, lost, dead), fetched = await c.finish_and_fetch([done], 2)
            after = await _script_calls(e.client)
            assert (recorded, lost, dead) == (1, 0, 0)
            assert fetched is not None and [f.job.id for f in fetched.jobs] == ["j2", "j3"]
            calls = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k)}
            # Commands a script runs count too (zadd, hset, ...): the client sent one EVALSHA.
            assert calls.get("evalsha") == 1, calls
            assert not {"eval", "multi", "exec", "script|load"} & set(calls), calls
            job = await e.get_job("j1")
            assert job is not None and job.state == "completed"

    asyncio.run(main())


def test_the_combined_script_is_loaded_again_after_a_script_flush(redis_url: str) -> None:
    """A server restart (or SCRIPT FLUSH) forgets scripts: the call loads it and goes on."""

    async def main() -> None:
        q = QueueConfig(name="flushed", handler="x:y", lease=30.0)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {}, JobOptions(job_id=f"j{i}")) for i in range(2)])
            c = QueueConsumer(e, "w", e.client)
            (first,) = (await c.fetch(1)).jobs
            await e.client.script_flush()
            done = Outcome(OutcomeKind.COMPLETED, first.job.id, first.token, result="1")
            (recorded, _, _), fetched = await c.finish_and_fetch([done], 1)
            assert recorded == 1
            assert fetched is not None and [f.job.id for f in fetched.jobs] == ["j1"]

    asyncio.run(main())


def test_a_finish_recorded_twice_is_counted_lost_and_leases_nothing_twice(
    redis_url: str,
) -> None:
    """The caller sends the outcomes again when a reply is lost: the second record of a run
    writes nothing, and the jobs the first call leased stay leased to it alone."""

    async def main() -> None:
        q = QueueConfig(name="twice", handler="x:y", lease=30.0)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {}, JobOptions(job_id=f"j{i}")) for i in range(3)])
            c = QueueConsumer(e, "w", e.client)
            (first,) = (await c.fetch(1)).jobs
            done = Outcome(OutcomeKind.COMPLETED, first.job.id, first.token, result="1")
            (recorded, _, _), one = await c.finish_and_fetch([done], 1)
            (again, lost, _), two = await c.finish_and_fetch([done], 1)
            assert (recorded, again, lost) == (1, 0, 1)
            assert one is not None and two is not None
            assert [f.job.id for f in one.jobs + two.jobs] == ["j1", "j2"]
            meta = await e.client.hget(e.keys.meta, "completed_total")
            assert int(meta) == 1

    asyncio.run(main())


def test_the_script_names_the_queue_keys_as_keys_py_does(redis_url: str) -> None:
    """finish_fetch gets only the meta key and names the others itself: a key renamed in
    keys.py but not in the script would silently split a queue in two."""
    from cortexflow.engine.scripts import source

    script = source("finish_fetch").split("local m = tonumber(ARGV[1])", 1)[1]
    probe = "local m = 0\n" + script.split("local finish_args", 1)[0]
    probe += "return {finish_keys, fetch_keys}\n"

    async def main() -> None:
        q = QueueConfig(name="named", handler="x:y")
        async with engine_for(redis_url, q) as e:
            k = e.keys
            finish_keys, fetch_keys = await e.client.eval(probe, 1, k.meta, "0")
            assert [x.decode() for x in finish_keys] == [
                k.active, k.wait, k.delayed, k.completed, k.failed, k.meta, k.marker,
                k.dlq_outbox, k.events, k.metrics,
            ]  # fmt: skip
            assert [x.decode() for x in fetch_keys] == [
                k.wait, k.delayed, k.active, k.meta, k.limiter, k.marker, k.failed,
                k.dlq_outbox, k.events,
            ]  # fmt: skip
            c = QueueConsumer(e, "w", e.client)
            assert c._fetch_keys == [x.decode() for x in fetch_keys]
            assert c._finish_keys == [x.decode() for x in finish_keys]

    asyncio.run(main())
