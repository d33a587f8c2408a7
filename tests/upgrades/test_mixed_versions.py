"""A rolling deploy: workers and producers of the previous release (tests/upgrades/conftest.py)
and of this code on the same queues of one server. Jobs added by one version run on the other
with their options (priority, delay, attempts and backoff, the queue's timeout, job id), both
ways; with both versions' workers running at once, every job runs exactly as often as its
attempts say. And a release whose data format older code could not work on refuses to migrate
while a worker of the previous release is running, saying so."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from cortexflow.api.manager import QueueManager
from cortexflow.engine import connect
from cortexflow.engine.dataformat import CURRENT, Code, Migration, ensure_format
from cortexflow.engine.jobs import Job
from cortexflow.errors import DataFormatError
from tests.helpers.jobs import wait_workers_ready
from tests.helpers.poll import wait_for
from tests.upgrades.conftest import Versions

pytestmark = pytest.mark.slow

# Higher priority first, FIFO within one: the order a single slot runs them in.
PRIORITIES = [1, 100, 5, 100, 2, 50]
PRIORITY_ORDER = ["p-1", "p-3", "p-5", "p-2", "p-4", "p-0"]
DELAYS_MS = {"d-1": 1500, "d-2": 700}


def _job(key: str, queue: str = "mixed", data: dict[str, Any] | None = None, **opts: Any) -> dict:
    return {"key": key, "queue": queue, "name": key, "data": data or {}, "opts": opts}


def _option_jobs() -> list[dict[str, Any]]:
    jobs = [_job(f"p-{i}", priority=p, job_id=f"p-{i}") for i, p in enumerate(PRIORITIES)]
    jobs += [_job(k, delay=ms, job_id=k) for k, ms in DELAYS_MS.items()]
    fixed = {"type": "fixed", "delay": 300, "jitter": 0}
    jobs += [
        # fails twice, then completes on its third and last attempt, 300 ms apart
        _job("r-1", data={"fail_until": 3}, attempts=3, backoff=fixed, job_id="r-1"),
        # fails both its attempts: failed for good
        _job("r-2", data={"fail_until": 99}, attempts=2, job_id="r-2"),
        # the second add of an id that exists adds nothing
        _job("dup-1", data={"v": 1}, job_id="same"),
        _job("dup-2", data={"v": 2}, job_id="same"),
        # the queue's timeout (1s) ends both of its attempts (the queue's 2)
        _job("t-1", queue="timeouts", data={"sleep": 3}, job_id="t-1"),
        _job("z-1", job_id="z-1"),
    ]
    return jobs


# Runs each job makes: attempts as above; the others once.
EXPECTED_ATTEMPTS = {
    **{k: [1] for k in [*PRIORITY_ORDER, *DELAYS_MS, "same", "z-1"]},
    "r-1": [1, 2, 3],
    "r-2": [1, 2],
    "t-1": [1, 2],
}
FINAL_STATE = {**{k: "completed" for k in EXPECTED_ATTEMPTS}, "r-2": "failed", "t-1": "failed"}


def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange("mix:runs", 0, -1)]


def _jobs(v: Versions, ids: Sequence[tuple[str, str]]) -> dict[str, Job]:
    """The jobs as this code reads them (QueueManager, through the data format check)."""

    async def read() -> dict[str, Job]:
        async with QueueManager(v.project, v.url) as manager:
            found = {}
            for queue, job_id in ids:
                job = await manager.get_queue(queue).get_job(job_id)
                assert job is not None, f"{queue}/{job_id} is gone"
                found[job_id] = job
            return found

    return asyncio.run(read())


def _settled(v: Versions, expected: dict[str, str]) -> Callable[[], dict[str, Job] | None]:
    queue_of = {"t-1": "timeouts"}
    ids = [(queue_of.get(i, "mixed"), i) for i in expected]

    def check() -> dict[str, Job] | None:
        jobs = _jobs(v, ids)
        return jobs if all(jobs[i].state == s for i, s in expected.items()) else None

    return check


@pytest.mark.parametrize(
    ("producer", "runner"),
    [("old", "new"), ("new", "old")],
    ids=["old-adds-new-runs", "new-adds-old-runs"],
)
def test_jobs_added_by_one_version_run_on_the_other_with_their_options(
    versions: Callable[[], Versions], redis_client: redis.Redis, producer: str, runner: str
) -> None:
    v = versions()
    # Paused by one version while the other's workers start, so that they run the prioritised
    # jobs in order and are ready before the delayed ones are due.
    v.produce(producer, [{"op": "pause", "queue": "mixed"}])
    workers = [v.worker(runner, "mixed"), v.worker(runner, "timeouts")]
    wait_workers_ready(redis_client, "mixed")
    wait_workers_ready(redis_client, "timeouts")
    added = v.produce(producer, [*_option_jobs(), {"op": "resume", "queue": "mixed"}])
    assert added["dup-2"]["id"] == added["dup-1"]["id"] == "same"
    jobs = wait_for(
        _settled(v, FINAL_STATE),
        60,
        message=lambda: f"runs so far: {_runs(redis_client)}\n{workers[0].log()}",
    )
    runs = _runs(redis_client)
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_id[run["id"]].append(run)
    assert {i: [r["attempt"] for r in rs] for i, rs in by_id.items()} == EXPECTED_ATTEMPTS
    assert {r["side"] for r in runs} == {runner}
    # Priority: one slot runs the six prioritised jobs first, highest first, FIFO within one.
    assert [r["id"] for r in runs if r["queue"] == "mixed"][:6] == PRIORITY_ORDER
    # Delay: never before the server's add time + delay.
    for key, ms in DELAYS_MS.items():
        assert by_id[key][0]["t"] >= jobs[key].created_at + ms / 1000 - 0.002, key
    # Backoff: 300 ms between r-1's attempts at least (fixed, no jitter).
    starts = [r["t"] for r in by_id["r-1"]]
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(starts)), starts
    assert (jobs["r-1"].attempts, jobs["r-1"].attempts_made) == (3, 3)
    assert (jobs["r-2"].attempts_made, jobs["r-2"].state) == (2, "failed")
    assert by_id["same"][0]["data"] == {"v": 1}
    assert "timeout" in (jobs["t-1"].error or ""), jobs["t-1"].error
    for worker in workers:
        assert worker.alive(), worker.log()


def _shared_load(rng: random.Random, side: str, n: int) -> list[dict[str, Any]]:
    """``n`` jobs with random priorities and delays; every 7th fails once and is retried."""
    jobs = []
    for i in range(n):
        opts: dict[str, Any] = {"job_id": f"{side}-{i}", "priority": rng.randrange(0, 10)}
        if i % 3 == 0:
            opts["delay"] = rng.randrange(0, 800)
        data: dict[str, Any] = {}
        if i % 7 == 0:
            opts |= {"attempts": 2, "backoff": {"type": "fixed", "delay": 50, "jitter": 0}}
            data["fail_until"] = 2
        jobs.append(_job(f"{side}-{i}", queue="shared", data=data, **opts))
    return jobs


def test_workers_of_both_versions_at_once_run_every_job_once(
    versions: Callable[[], Versions], redis_client: redis.Redis
) -> None:
    v = versions()
    workers = [v.worker(side, "shared") for side in ("old", "new", "old")]
    wait_workers_ready(redis_client, "shared", n=3)
    rng = random.Random(28)
    loads = {side: _shared_load(rng, side, 150) for side in ("old", "new")}
    for side, jobs in loads.items():  # one producer of each version, one after the other
        v.produce(side, jobs)
    expected = {
        job["opts"]["job_id"]: [1, 2] if job["data"].get("fail_until") else [1]
        for jobs in loads.values()
        for job in jobs
    }
    total = sum(len(a) for a in expected.values())
    wait_for(
        lambda: (
            redis_client.llen("mix:runs") >= total
            and redis_client.zcard("{cortexflow:shared}:completed") == len(expected)
        ),
        60,
        message=lambda: f"{redis_client.llen('mix:runs')} of {total} runs",
    )
    runs = _runs(redis_client)
    attempts: dict[str, list[int]] = defaultdict(list)
    for run in runs:
        attempts[run["id"]].append(run["attempt"])
    assert dict(attempts) == expected  # every job ran, once per attempt, none twice
    sides = {r["side"] for r in runs}
    assert sides == {"old", "new"}, sides  # both versions took jobs
    assert all(w.alive() for w in workers)
    for state in ("wait", "delayed", "active", "failed"):
        assert redis_client.zcard(f"{{cortexflow:shared}}:{state}") == 0, state


def test_a_release_that_older_workers_cannot_follow_refuses_while_they_run(
    versions: Callable[[], Versions], redis_client: redis.Redis
) -> None:
    """Were the next release's data unreadable to this one's previous release, its first
    process would refuse to migrate while a worker of that release runs, naming it."""
    v = versions()
    old = v.worker("old", "mixed")
    wait_workers_ready(redis_client, "mixed", n=1)

    async def noop(client: Any, prefix: str, queues: Sequence[str]) -> None:
        return None

    step = Migration(to=CURRENT.format + 1, oldest_reader=CURRENT.format + 1, what="", run=noop)
    incompatible = Code(
        format=step.to, oldest_reader=step.to, migrations={step.to: step}, name="cortexflow 9"
    )

    async def start() -> str:
        client = connect(v.url)
        try:
            with pytest.raises(DataFormatError) as refused:
                await ensure_format(client, "cortexflow", ["mixed", "timeouts"], code=incompatible)
            return str(refused.value)
        finally:
            await client.aclose()

    message = asyncio.run(start())
    assert f"must migrate it to format {step.to}" in message
    assert "such workers are running (mixed: " in message and f":{old.pid}:" in message
    assert "Stop them first" in message
    assert redis_client.get("{cortexflow}:format") is None  # nothing migrated, nothing stamped
    assert old.alive()
