"""The job hash's footprint: a small job stores only what it does not share with its
queue, so its hash stays a compact listpack; readers fill the rest, old hashes still read and run.

Real Valkey (the session server), real workers in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import redis

from cortexflow.config.model import Backoff, QueueConfig, Retention, RetentionRule
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for_async

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))
QUICK = Backoff(type="fixed", delay=0.05)
SMALL = {"user_id": 123456, "email": "ada@example.com", "tpl": "welcome"}  # 60 bytes of JSON
COMPLETE = {"attempts", "backoff", "timeout", "remove_on_complete", "remove_on_fail"}


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(key).items()}


def test_a_small_job_is_a_listpack_hash_without_id_opts_or_zero_fields(
    redis_url: str, redis_client: redis.Redis
) -> None:
    q = QueueConfig(name="small", handler="x:y")

    async def main() -> list[str]:
        async with engine_for(redis_url, q) as e:
            return [
                await e.add("noop", {}),
                await e.add("mail", SMALL),
                await e.add("later", {}, JobOptions(delay=3600.0)),
            ]

    ids = asyncio.run(main())
    for jid in ids:
        key = f"{{cortexflow:small}}:j:{jid}"
        assert redis_client.object("encoding", key) == b"listpack", jid
        fields = set(_hash(redis_client, key))
        assert fields.isdisjoint({"id", "opts", "attempts_made", "stalls", "deliveries"})
        assert "priority" not in fields  # priority 0 is not stored
        # Generous: the old layout's hash of a {} job took ~760 bytes (a hashtable).
        usage = redis_client.memory_usage(key, samples=0)
        assert usage is not None and usage < 400, (jid, usage)
    assert "delay" not in _hash(redis_client, f"{{cortexflow:small}}:j:{ids[0]}")
    assert _hash(redis_client, f"{{cortexflow:small}}:j:{ids[2]}")["delay"] == "3600000"


def test_a_jobs_own_options_alone_are_stored_and_read_back_complete(
    redis_url: str, redis_client: redis.Redis
) -> None:
    q = QueueConfig(name="own", handler="x:y", attempts=3, timeout=60.0)
    backoff = Backoff(type="fixed", delay=2.0, max=2.0)
    own = JobOptions(
        job_id="own", priority=9, attempts=4, backoff=backoff, timeout=12.5, remove_on_fail=3
    )

    async def main() -> dict[str, Any]:
        async with engine_for(redis_url, q) as e:
            await e.add("a", {"n": 1}, own)
            await e.add("b", {"n": 2}, JobOptions(job_id="plain"))
            got = {"own": await e.get_job("own"), "plain": await e.get_job("plain")}
            listed = {j.id: j for j in await e.list_jobs("waiting")}
            fetched = await QueueConsumer(e, "w1", e.client).fetch(2)
            return {
                "got": got,
                "listed": listed,
                "fetched": {f.job.id: f.job for f in fetched.jobs},
            }

    r = asyncio.run(main())
    stored = json.loads(_hash(redis_client, "{cortexflow:own}:j:own")["opts"])
    assert stored == {
        "attempts": 4,
        "backoff": {"type": "fixed", "delay": 2.0, "max": 2.0, "jitter": 0.0},
        "timeout": 12.5,
        "remove_on_fail": 3,
    }
    assert _hash(redis_client, "{cortexflow:own}:j:own")["priority"] == "9"
    assert "opts" not in _hash(redis_client, "{cortexflow:own}:j:plain")
    queue_opts = {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 1.0, "max": 600.0, "jitter": 0.0},
        "timeout": 60.0,
        "remove_on_complete": None,
        "remove_on_fail": None,
    }
    for source in ("got", "listed", "fetched"):
        mine, plain = r[source]["own"], r[source]["plain"]
        assert mine.id == "own" and plain.id == "plain", source
        assert dict(mine.opts) == {**stored, "remove_on_complete": None}, source
        assert (mine.attempts, mine.priority) == (4, 9), source
        assert dict(plain.opts) == queue_opts and plain.attempts == 3, source
        assert (plain.priority, plain.delay, plain.attempts_made, plain.stalls) == (0, 0, 0, 0)
    # A reader's copy is its own: changing it leaves the next job's options alone.
    r["got"]["plain"].opts["backoff"]["delay"] = 99.0
    assert r["listed"]["plain"].opts["backoff"]["delay"] == 1.0
    as_json = r["got"]["plain"].to_dict()  # `cortexflow job --json`, the dashboard's API
    assert set(as_json["opts"]) == COMPLETE and as_json["attempts"] == 3
    assert as_json["id"] == "plain"


def test_a_job_without_options_follows_the_queues_current_settings(
    redis_url: str, tmp_path: Path
) -> None:
    """Added while the queue allowed 1 attempt, run after it allows 3: it gets 3. A job that set
    its attempts keeps them."""
    before = QueueConfig(name="follow", handler="x:y", attempts=1, retention=KEEP_ALL)
    after = dataclasses.replace(before, attempts=3, backoff=QUICK)
    runs: dict[str, int] = {}

    async def handler(data: Any, job: Any) -> None:
        runs[job.id] = runs.get(job.id, 0) + 1
        raise RuntimeError("boom")

    async def main() -> None:
        async with engine_for(redis_url, before) as e:
            await e.add("x", {}, JobOptions(job_id="plain"))
            await e.add("x", {}, JobOptions(job_id="own", attempts=1))
        async with engine_for(redis_url, after) as e:
            job = await e.get_job("plain")
            assert job is not None and job.attempts == 3 and job.opts["backoff"]["type"] == "fixed"
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", after), "follow", redis_url, handler
            ):
                await wait_for_async(lambda: _failed(e, 2), 20, message="both jobs failed for good")
            plain, own = await e.get_job("plain"), await e.get_job("own")
            assert plain is not None and own is not None
            assert (plain.attempts_made, own.attempts_made) == (3, 1)

    asyncio.run(main())
    assert runs == {"plain": 3, "own": 1}


async def _failed(e: Any, n: int) -> bool:
    return int((await e.stats())["failed"]) == n


def test_a_job_hash_of_the_old_layout_still_reads_and_runs(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A backlog written before the compact layout (every option, the id field, zero counters):
    its stored options still rule (2 attempts, not the queue's 5)."""
    q = QueueConfig(name="legacy", handler="x:y", attempts=5, backoff=QUICK, retention=KEEP_ALL)
    old_opts = {
        "attempts": 2,
        "backoff": {"type": "fixed", "delay": 0.05, "max": 600.0, "jitter": 0.0},
        "timeout": 300.0,
        "remove_on_complete": None,
        "remove_on_fail": None,
    }
    for seq, (jid, data) in enumerate([("oldfail", {"fail": True}), ("oldok", {"fail": False})]):
        score = (1_000_000 - 4) * 2**32 + seq + 1
        redis_client.hset(
            f"{{cortexflow:legacy}}:j:{jid}",
            mapping={
                "id": jid,
                "name": "legacy",
                "data": json.dumps(data),
                "opts": json.dumps(old_opts, separators=(",", ":")),
                "priority": 4,
                "delay": 0,
                "state": "waiting",
                "attempts_made": 0,
                "stalls": 0,
                "deliveries": 0,
                "created_at": 1_700_000_000_000,
                "score": score,
            },
        )
        redis_client.zadd("{cortexflow:legacy}:wait", {jid: score})
    runs: dict[str, int] = {}

    async def handler(data: Any, job: Any) -> str:
        runs[job.id] = runs.get(job.id, 0) + 1
        if data["fail"]:
            raise RuntimeError("boom")
        return "done"

    async def main() -> None:
        async with engine_for(redis_url, q) as e:
            job = await e.get_job("oldok")
            assert job is not None and job.id == "oldok" and job.priority == 4
            assert job.attempts == 2 and dict(job.opts) == old_opts
            assert job.created_at == 1_700_000_000.0
            async with inproc_worker(
                make_config(tmp_path / "q.yaml", q), "legacy", redis_url, handler
            ):
                await wait_for_async(lambda: _settled(e), 20, message="1 completed, 1 failed")
            failed, done = await e.get_job("oldfail"), await e.get_job("oldok")
            assert failed is not None and failed.attempts_made == 2 and failed.state == "failed"
            assert done is not None and done.result == "done" and done.state == "completed"

    asyncio.run(main())
    assert runs == {"oldfail": 2, "oldok": 1}


async def _settled(e: Any) -> bool:
    s = await e.stats()
    return (int(s["completed"]), int(s["failed"])) == (1, 1)
