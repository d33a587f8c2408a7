"""Short jobs share their round trips: the worker records several outcomes, and leases the
jobs for the freed slots, in one script call (a call per job was most of a job's CPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cortexflow.config.model import QueueConfig
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

JOBS = 400


def test_short_jobs_are_recorded_several_per_script_call(redis_url: str, tmp_path: Path) -> None:
    async def handler(data: Any) -> None:
        return None

    async def main() -> None:
        q = QueueConfig(name="short", handler="x:y", concurrency=10)
        async with engine_for(redis_url, q) as e:
            await e.add_bulk([("n", {"i": i}, None) for i in range(JOBS)])
            before = (await e.client.info("commandstats"))["cmdstat_evalsha"]["calls"]
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "short", redis_url, handler
            ):

                async def all_done() -> bool:
                    return int(await e.client.hget(e.keys.meta, "completed_total") or 0) == JOBS

                await wait_for_async(all_done, 60, message="the jobs never all completed")
            calls = (await e.client.info("commandstats"))["cmdstat_evalsha"]["calls"] - before
            # Old code: 0.8-1.2 script calls per job (outcomes written 1.4 per call); now ~0.2.
            assert calls <= JOBS * 0.5, f"{calls} script calls for {JOBS} jobs"

    asyncio.run(main())
