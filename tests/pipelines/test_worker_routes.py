"""Routes through a real worker: the handler's result becomes the next jobs; data the target's
payload schema refuses fails the parent's attempt (retried like any failure) and hands off
nothing; `on: failed` routes run when the job fails for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cortexflow.config.model import Backoff, QueueConfig, Route
from cortexflow.engine import connect
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from tests.helpers.jobs import PREFIX, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


def test_a_refused_hand_off_fails_the_attempt_and_a_good_one_is_added(
    redis_url: str, tmp_path: Path
) -> None:
    routes = (
        Route(to="dst", name="next", data="/out", id=("$id",)),
        Route(to="failures", name="why", on="failed"),
    )
    src = QueueConfig(
        name="src", handler="x:y", attempts=2, backoff=Backoff("fixed", 0.05), routes=routes
    )
    dst = QueueConfig(name="dst", handler="x:y", payload_schema_doc=SCHEMA)
    failures = QueueConfig(name="failures", handler="x:y")
    runs: list[str] = []

    async def handler(data: Any, job: Any) -> Any:
        runs.append(job.id)
        return {"out": {"n": data["n"]}}

    async def main() -> None:
        client = connect(redis_url)
        e = {q.name: QueueEngine(client, q, PREFIX) for q in (src, dst, failures)}
        await e["src"].add_bulk(
            [
                ("j", {"n": "seven"}, JobOptions(job_id="bad")),
                ("j", {"n": 7}, JobOptions(job_id="good")),
            ]
        )
        config = make_config(tmp_path / "q.yaml", src, dst, failures)
        async with inproc_worker(config, "src", redis_url, handler):

            async def settled() -> bool:
                states = [(await e["src"].get_job(i)) for i in ("bad", "good")]
                return all(j is not None and j.state in ("completed", "failed") for j in states)

            await wait_for_async(settled, 30, message="both jobs ended")
        bad = await e["src"].get_job("bad")
        assert bad is not None and bad.state == "failed" and bad.attempts_made == 2
        assert runs.count("bad") == 2  # retried like any failure
        assert "next[0] (to dst), job bad" in (bad.error or "")
        assert "/n: 'seven' is not of type 'integer'" in (bad.error or "")
        assert await e["dst"].get_job("bad") is None
        good = await e["dst"].get_job("good")
        assert good is not None and good.data == {"n": 7} and good.parent == ("src", "good")
        # The on: failed route: one job with the failure (the dead-letter envelope's fields).
        assert await client.zrange(e["failures"].keys.wait, 0, -1) == [b"src-bad-1"]
        why = await e["failures"].get_job("src-bad-1")
        assert why is not None and why.parent == ("src", "bad")
        assert why.data["id"] == "bad" and why.data["data"] == {"n": "seven"}
        assert why.data["attemptsMade"] == 2 and "to dst" in why.data["error"]
        await client.aclose()

    asyncio.run(main())
