"""Model-based test of a job's life (Hypothesis): random sequences of adds, leases, outcomes,
releases, stalls and operations against the real server, checking after every step that each job
is in exactly one state, that its hash agrees, and that stats add up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from redis.cluster import RedisCluster

from cortexflow.config.model import Backoff, QueueConfig, Retention, RetentionRule
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine

KEEP_ALL = Retention(RetentionRule(None, None), RetentionRule(None, None))
SETS = {"waiting": "wait", "delayed": "delayed", "active": "active",
        "completed": "completed", "failed": "failed"}  # fmt: skip


def sync_client(url: str) -> redis.Redis | RedisCluster:
    """The test's own reads: a plain client, or a cluster client for a redis+cluster:// URL."""
    if url.startswith("redis+cluster://"):
        host, _, port = url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
        return RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)


class JobLifecycle(RuleBasedStateMachine):
    url: str = ""
    ids = Bundle("ids")

    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sync = sync_client(self.url)
        if isinstance(self.sync, RedisCluster):  # tests/scale/test_cluster_engine.py
            self.sync.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            self.sync.flushdb()
        self.client = connect(self.url)
        queue = QueueConfig(
            name="sm", handler="x:y", attempts=2, lease=30.0, max_stalls=1,
            backoff=Backoff(type="fixed", delay=0.0), retention=KEEP_ALL,
        )  # fmt: skip
        self.engine = QueueEngine(self.client, queue, "cortexflow")
        self.consumer = QueueConsumer(self.engine, "w1", self.client)
        self.leases: dict[str, str] = {}  # job id -> token, for jobs this test holds
        self.known: set[str] = set()
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.run(self.client.aclose())
            self.loop.close()
            self.sync.close()

    # -- rules ---------------------------------------------------------------------------------

    @rule(target=ids, priority=st.integers(0, 3), delayed=st.booleans())
    def add(self, priority: int, delayed: bool) -> str:
        self.counter += 1
        job_id = f"j{self.counter}"
        opts = JobOptions(job_id=job_id, priority=priority, delay=3600 if delayed else None)
        assert self.run(self.engine.add("n", {"i": self.counter}, opts)) == job_id
        self.known.add(job_id)
        return job_id

    @rule(job_id=ids)
    def add_again_adds_nothing(self, job_id: str) -> None:
        if job_id in self.known:
            before = self.sync.hgetall(self.engine.keys.job(job_id))
            self.run(self.engine.add("other", {"x": 1}, JobOptions(job_id=job_id)))
            assert self.sync.hgetall(self.engine.keys.job(job_id)) == before

    @rule(n=st.integers(1, 3))
    def lease(self, n: int) -> None:
        waiting = self.sync.zrange(self.engine.keys.wait, 0, 0, withscores=True)
        got = self.run(self.consumer.fetch(n)).jobs
        for f in got:
            assert f.job.id not in self.leases
            self.leases[f.job.id] = f.token
        if waiting:  # the best waiting job is the first one leased
            assert got and got[0].job.id == waiting[0][0].decode()

    @rule(data=st.data(), kind=st.sampled_from(["c", "r", "f"]))
    def finish(self, data: st.DataObject, kind: str) -> None:
        if not self.leases:
            return
        job_id = data.draw(st.sampled_from(sorted(self.leases)))
        token = self.leases.pop(job_id)
        outcome = Outcome(OutcomeKind(kind), job_id, token, result='"ok"', error="x")
        done, lost, _ = self.run(self.consumer.finish([outcome]))
        assert (done, lost) == (1, 0)
        state = self.state_of(job_id)
        assert state == {"c": "completed", "r": "waiting", "f": "failed"}[kind]

    @rule(data=st.data())
    def stale_token_is_refused(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        job_id = data.draw(st.sampled_from(sorted(self.leases)))
        outcome = Outcome(OutcomeKind.COMPLETED, job_id, "w0:999", result='"x"')
        assert self.run(self.consumer.finish([outcome])) == (0, 1, 0)
        assert self.state_of(job_id) == "active"

    @rule()
    def release_all(self) -> None:
        held = list(self.leases.items())
        self.leases.clear()
        assert self.run(self.consumer.release(held)) == len(held)
        for job_id, _ in held:
            assert self.state_of(job_id) == "waiting"

    @rule()
    def leases_expire(self) -> None:
        """Every held lease runs out (its worker died): the next fetch recovers the jobs."""
        for job_id in self.leases:
            self.sync.zadd(self.engine.keys.active, {job_id: 0})
        held, self.leases = self.leases, {}
        for f in self.run(self.consumer.fetch(1)).jobs:  # recovers them, leases the best one
            self.leases[f.job.id] = f.token
        for job_id in held:
            assert self.state_of(job_id) in ("waiting", "failed", "active")
            stalls = int(self.sync.hget(self.engine.keys.job(job_id), "stalls") or 0)
            assert stalls >= 1
            if self.state_of(job_id) == "failed":
                assert stalls >= 2

    @rule(job_id=ids)
    def promote(self, job_id: str) -> None:
        was = self.state_of(job_id)
        promoted = self.run(self.engine.promote(job_id))
        assert promoted == (was == "delayed")

    @rule(job_id=ids)
    def remove(self, job_id: str) -> None:
        was = self.state_of(job_id)
        if was == "active":
            return
        removed = self.run(self.engine.remove(job_id))
        assert removed == (was is not None)
        self.known.discard(job_id)

    @rule()
    def retry_all_failed(self) -> None:
        failed = {m.decode() for m in self.sync.zrange(self.engine.keys.failed, 0, -1)}
        moved = set(self.run(self.engine.retry()))
        assert moved == failed

    # -- invariants ----------------------------------------------------------------------------

    def state_of(self, job_id: str) -> str | None:
        found = [
            s
            for s, k in SETS.items()
            if self.sync.zscore(self.engine.keys.k(k), job_id) is not None
        ]
        assert len(found) <= 1, f"{job_id} in {found}"
        return found[0] if found else None

    @invariant()
    def every_job_in_exactly_one_state_matching_its_hash(self) -> None:
        if not hasattr(self, "engine"):
            return
        total = 0
        for state, key in SETS.items():
            members = self.sync.zrange(self.engine.keys.k(key), 0, -1)
            total += len(members)
            for m in members:
                h = self.sync.hget(self.engine.keys.job(m.decode()), "state")
                assert h is not None and h.decode() == state, (m, h, state)
        assert total == len(self.known)
        stats = self.run(self.engine.stats())
        assert sum(stats[s] for s in SETS) == total
        assert stats["active"] == len(self.leases)


@pytest.mark.slow
def test_job_lifecycle_state_machine(redis_url: str) -> None:
    # A subclass per run: the Cluster run (tests/scale) runs this test too, and Hypothesis
    # refuses settings applied twice to one class.
    machine = type("JobLifecycleRun", (JobLifecycle,), {"url": redis_url})
    run = settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(machine).TestCase  # fmt: skip
    run().runTest()
