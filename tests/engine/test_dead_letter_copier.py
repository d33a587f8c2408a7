"""The dead-letter copier cannot die or wedge, is woken by stalled failures, and writes one
dead letter per failure (cases 4 and 5 of the engine hardening)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from cortexflow.cli.render import health_text
from cortexflow.config.model import QueueConfig, Retention, RetentionRule
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.health import health
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))


def _queues() -> tuple[QueueConfig, QueueConfig]:
    src = QueueConfig(
        name="src", handler="x:y", attempts=1, lease=0.5, dead_letter="dlq", retention=KEEP_ALL
    )
    return src, QueueConfig(name="dlq", handler="x:y", retention=KEEP_ALL)


async def _waiting(e: Any, n: int) -> bool:
    return bool((await e.stats())["waiting"] >= n)


def test_an_oversized_dead_letter_does_not_wedge_the_outbox(redis_url: str, tmp_path: Path) -> None:
    """A failed job whose error echoes its ~4 MiB payload: its envelope would exceed the
    payload limit. It is copied without the data, and later dead letters still arrive."""

    async def handler(data: Any) -> None:
        raise ValueError(f"bad input: {data['blob']}")

    async def main() -> None:
        src, dlq = _queues()
        cfg = make_config(tmp_path / "q.yaml", src, dlq)
        async with engine_for(redis_url, src) as e, engine_for(redis_url, dlq) as d:
            await e.add("big", {"blob": "x" * (4 * 1024 * 1024 - 100)}, JobOptions(job_id="big"))
            await e.add("small", {"v": 1}, JobOptions(job_id="small"))
            async with inproc_worker(cfg, "src", redis_url, handler):
                await wait_for_async(lambda: _waiting(d, 2), 30, message="both dead letters copied")
            big = await d.get_job("big")
            assert big is not None and big.data["data"] is None
            assert "over the 4,194,304 byte limit" in big.data["dataOmitted"]
            assert big.data["error"].startswith("ValueError: bad input: xxx")
            small = await d.get_job("small")
            assert small is not None and small.data["data"] == {"v": 1}
            assert await e.client.llen(e.keys.dlq_outbox) == 0

    asyncio.run(main())


def test_an_entry_that_cannot_be_copied_is_set_aside_and_counted(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        src, dlq = _queues()
        cfg = make_config(tmp_path / "q.yaml", src, dlq)
        async with engine_for(redis_url, src) as e, engine_for(redis_url, dlq) as d:
            await e.client.rpush(e.keys.dlq_outbox, b"{not json \xff")  # another client's junk
            await e.add("n", {"v": 2}, JobOptions(job_id="after"))
            async with inproc_worker(cfg, "src", redis_url, handler):
                await wait_for_async(
                    lambda: _waiting(d, 1), 30, message="the good dead letter copied"
                )
                stats = await e.stats()
            assert stats["deadLettersNotCopied"] == 1
            report = await health(e.client, "cortexflow", ["src", "dlq"])
            assert report["deadLettersNotCopied"] == {"src": 1}
            assert "src: 1 dead letter(s) could not be copied" in health_text(report)
            assert await e.client.llen(e.keys.dlq_outbox) == 0
            assert await d.get_job("after") is not None

    asyncio.run(main())


def test_stalled_failures_reach_the_dead_letter_queue_without_a_restart(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> None:
        return None

    async def main() -> None:
        src, dlq = _queues()
        src = dataclasses.replace(src, max_stalls=0)
        cfg = make_config(tmp_path / "q.yaml", src, dlq)
        async with engine_for(redis_url, src) as e, engine_for(redis_url, dlq) as d:
            await e.add("n", {"v": 3}, JobOptions(job_id="st"))
            dying = QueueConsumer(e, "dying", e.client)  # takes the job, then "dies"
            assert len((await dying.fetch(1)).jobs) == 1
            # The live worker starts (and copies what is in the outbox: nothing yet); its
            # fetch at the lease deadline fails the stalled job.
            async with inproc_worker(cfg, "src", redis_url, handler):
                await wait_for_async(
                    lambda: _waiting(d, 1), 30, message="the stalled failure dead-lettered"
                )
            letter = await d.get_job("st")
            assert letter is not None and "stalled 1 times" in letter.data["error"]
            assert letter.data["data"] == {"v": 3}

    asyncio.run(main())


def test_a_job_retried_by_an_operator_that_fails_again_is_a_second_dead_letter(
    redis_url: str, tmp_path: Path
) -> None:
    async def handler(data: Any) -> None:
        raise RuntimeError("still broken")

    async def main() -> None:
        src, dlq = _queues()
        cfg = make_config(tmp_path / "q.yaml", src, dlq)
        async with engine_for(redis_url, src) as e, engine_for(redis_url, dlq) as d:
            await e.add("n", {"v": 4}, JobOptions(job_id="again"))
            async with inproc_worker(cfg, "src", redis_url, handler):
                await wait_for_async(lambda: _waiting(d, 1), 30, message="first dead letter")
                assert await e.retry(["again"]) == ["again"]
                await wait_for_async(lambda: _waiting(d, 2), 30, message="second dead letter")
            ids = sorted(j.id for j in await d.list_jobs("waiting"))
            assert ids == ["again", "again-2"]
            # A repeated copy of the same failure adds nothing.
            c = QueueConsumer(e, "w", e.client)
            entry = {"id": "again", "letter": 2, "name": "n", "data": {}, "error": "x"}
            await e.client.rpush(e.keys.dlq_outbox, json.dumps(entry))
            assert await c.copy_dead_letters(d) == 1
            assert (await d.stats())["waiting"] == 2

    asyncio.run(main())
