"""Fairness, group concurrency and the per-group rate limit with real worker processes.

- One group with 10,000 waiting jobs (group concurrency 10, so it could take every slot) and 100
  groups of one job added after it: all 100 finish before the big group's 200th job starts.
- Group concurrency 3 and a rate limit of 5 starts per second per group hold across three
  worker processes, checked on the server's clock (the jobs' processed_at / finished_at)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.engine.jobs import JobOptions
from tests.groups.conftest import RECORDING_HANDLER, read_runs
from tests.helpers.jobs import engine_for, wait_workers_ready
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

BIG, SMALL = 10_000, 100


@pytest.mark.slow
def test_a_backlog_of_one_group_does_not_delay_new_groups(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    redis_url: str,
) -> None:
    runs_file = tmp_path / "runs.jsonl"
    monkeypatch.setenv("TEST_RUNS_FILE", str(runs_file))
    cfg = write_project(
        tmp_path,
        """
        queues:
          fair:
            handler: recorder:handle
            concurrency: 10
            retention: {completed: {count: 100000}}
            group: {key: /g, concurrency: 10}
        """,
        {"recorder.py": RECORDING_HANDLER},
    )
    queue = load_config(cfg).queues["fair"]

    async def add() -> None:
        async with engine_for(redis_url, queue) as e:
            await e.pause()
            for start in range(0, BIG, 1000):
                await e.add_bulk(
                    [("n", {"g": "big", "i": i, "sleep": 0.005}, None)
                     for i in range(start, start + 1000)]
                )  # fmt: skip
            await e.add_bulk(
                [("n", {"g": f"s{i}", "i": 0, "sleep": 0.005}, JobOptions(job_id=f"s{i}"))
                 for i in range(SMALL)]
            )  # fmt: skip
            await e.resume()

    asyncio.run(add())
    worker = workers(cfg, "fair", redis_url)
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if sum(client.exists(f"{{cortexflow:fair}}:j:s{i}") for i in range(0, SMALL, 10)) and (
                all(
                    client.hget(f"{{cortexflow:fair}}:j:s{i}", "state") == b"completed"
                    for i in range(SMALL)
                )
            ):
                break
            time.sleep(0.2)
    finally:
        client.close()
        worker.kill()
    runs = read_runs(runs_file)
    small_end = max(r["e"] for r in runs if "e" in r and r["g"] != "big")
    ended_small = {r["g"] for r in runs if "e" in r and r["g"] != "big"}
    big_starts = sorted(r["s"] for r in runs if "s" in r and r["g"] == "big")
    before = sum(1 for s in big_starts if s < small_end)
    print(f"\nfairness: {before} jobs of the big group started before the last single one ended")
    assert len(ended_small) == SMALL
    assert before < 200


@pytest.mark.slow
def test_group_concurrency_and_rate_limit_hold_across_three_workers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    redis_url: str,
) -> None:
    monkeypatch.setenv("TEST_RUNS_FILE", str(tmp_path / "runs.jsonl"))
    cfg = write_project(
        tmp_path,
        """
        queues:
          limited:
            handler: recorder:handle
            concurrency: 10
            retention: {completed: {count: 100000}}
            group:
              key: /g
              concurrency: 3
              rate_limit: {max: 5, duration: 1s}
        """,
        {"recorder.py": RECORDING_HANDLER},
    )
    queue = load_config(cfg).queues["limited"]
    groups, per_group = 8, 12  # 8 groups x 3 may run 24 jobs: more than two workers' 20 slots
    procs = [workers(cfg, "limited", redis_url) for _ in range(3)]
    with redis.Redis.from_url(redis_url) as ready:
        wait_workers_ready(ready, "limited", 3)

    async def add() -> list[str]:
        async with engine_for(redis_url, queue) as e:
            return await e.add_bulk(
                [("n", {"g": f"g{g}", "i": i, "sleep": 1.0}, None)
                 for i in range(per_group) for g in range(groups)]
            )  # fmt: skip

    ids = asyncio.run(add())
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while client.zcard("{cortexflow:limited}:completed") < len(ids):
            assert time.monotonic() < deadline, "not all jobs completed"
            time.sleep(0.2)
        spans: dict[str, list[tuple[int, int]]] = {}
        for jid in ids:
            g, start, end = client.hmget(
                f"{{cortexflow:limited}}:j:{jid}", "group", "processed_at", "finished_at"
            )
            spans.setdefault(g.decode(), []).append((int(start), int(end)))
        pids = {r["pid"] for r in read_runs(tmp_path / "runs.jsonl") if "pid" in r}
    finally:
        client.close()
        for p in procs:
            p.kill()
    assert len(pids) == 3, "the jobs ran in all three worker processes"
    peak = {}
    for g, s in spans.items():
        # Concurrency: at no start (server ms) are more than 3 jobs of the group running.
        peak[g] = max(sum(1 for a, b in s if a <= t < b) for t, _ in s)
        assert peak[g] <= 3, (g, peak[g])
        # Rate: any 6 consecutive starts span at least the 1 s window.
        starts = sorted(a for a, _ in s)
        assert all(starts[k + 5] - starts[k] >= 1000 for k in range(len(starts) - 5)), starts
    print(f"\ngroup concurrency peaks (limit 3): {peak}")
    assert max(peak.values()) == 3  # the limit was reached, so it was tested
