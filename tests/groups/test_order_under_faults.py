"""Order of a group's jobs under faults, checked from the handlers' own records (slow).

200 groups x 50 jobs through three worker processes (concurrency 20 each, group concurrency
1), a worker killed with kill -9 (and replaced) every 2 s and Valkey killed -9 and restarted once
(AOF, appendfsync always): in every group no job starts before the previous one ended, no job
is lost, none fails. Then with order: strict and failures injected, the order holds through the
retries."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from cortexflow.config import load_config
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import JobOptions
from tests.groups.conftest import RECORDING_HANDLER, order_violations, read_runs
from tests.helpers.jobs import engine_for
from tests.helpers.procs import Proc
from tests.helpers.project import write_project

GROUPS, PER_GROUP = 200, 50

CONFIG = """
stop_timeout: 5s
queues:
  ordered:
    handler: recorder:handle
    concurrency: 20
    lease: 2s
    attempts: 4
    max_stalls: 100
    backoff: {type: fixed, delay: 200ms}
    retention: {completed: {count: 100000}, failed: {count: 100000}}
    group: {key: /g, concurrency: 1, order: strict}
"""


def _jobs(
    groups: int, per_group: int, fail_rate: float = 0.0
) -> list[tuple[str, dict, JobOptions]]:
    rng = random.Random(5)
    out = []
    for i in range(per_group):  # interleaved, as messages of many conversations arrive
        for g in range(groups):
            data: dict = {"g": f"g{g}", "i": i, "sleep": rng.uniform(0.02, 0.08)}
            if rng.random() < fail_rate:
                data["fail"] = rng.choice([1, 1, 2])  # fails its first run (or two)
            out.append(("n", data, JobOptions(job_id=f"g{g}-{i}")))
    return out


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    server: ServerProcess,
    jobs: list[tuple[str, dict, JobOptions]],
    faults: bool,
) -> tuple[list[dict], dict, dict[str, int]]:
    runs_file = tmp_path / "runs.jsonl"
    monkeypatch.setenv("TEST_RUNS_FILE", str(runs_file))  # the workers inherit it
    cfg = write_project(tmp_path, CONFIG, {"recorder.py": RECORDING_HANDLER})
    queue = load_config(cfg).queues["ordered"]
    url = server.url
    client = redis.Redis.from_url(url)
    client.config_set("appendfsync", "always")
    procs = [workers(cfg, "ordered", url) for _ in range(3)]
    done = {"kills": 0, "server": 0}

    async def add() -> None:
        async with engine_for(url, queue) as e:
            for start in range(0, len(jobs), 1000):
                await e.add_bulk(jobs[start : start + 1000])

    asyncio.run(add())
    rng = random.Random()
    deadline = time.monotonic() + 240
    started = time.monotonic()

    def finished() -> int:
        return int(client.zcard("{cortexflow:ordered}:completed")) + int(
            client.zcard("{cortexflow:ordered}:failed")
        )

    next_kill = time.monotonic() + 2
    while finished() < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.2)
        for i, p in enumerate(procs):  # what a supervisor does: replace a worker that exited
            if not p.alive():
                procs[i] = workers(cfg, "ordered", url)
        if not faults or time.monotonic() < next_kill:
            continue
        next_kill = time.monotonic() + 2
        if done["server"] == 0 and time.monotonic() - started > 5:
            server.kill()
            time.sleep(1)
            server.start()
            client = redis.Redis.from_url(url)
            client.config_set("appendfsync", "always")
            done["server"] += 1
            continue
        victim = rng.randrange(3)
        procs[victim].kill()
        procs[victim] = workers(cfg, "ordered", url)
        done["kills"] += 1
    states = {
        "completed": int(client.zcard("{cortexflow:ordered}:completed")),
        "failed": int(client.zcard("{cortexflow:ordered}:failed")),
        "seconds": round(time.monotonic() - started, 1),
    }
    client.close()
    for p in procs:
        p.kill()
    return read_runs(runs_file), states, done


@pytest.mark.slow
def test_order_holds_under_kill9_of_workers_and_a_valkey_restart(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    private_server: Callable[..., ServerProcess],
) -> None:
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    try:
        jobs = _jobs(GROUPS, PER_GROUP)
        runs, states, done = _run(tmp_path, monkeypatch, workers, server, jobs, faults=True)
    finally:
        with contextlib.suppress(Exception):
            server.kill()
    ended = {(r["g"], r["i"]) for r in runs if "e" in r}
    starts = sum(1 for r in runs if "s" in r)
    print(
        f"\ngroups under faults: {len(jobs)} jobs, {done['kills']} worker kills, "
        f"{done['server']} server restarts, {starts - len(jobs)} runs again, {states}"
    )
    assert done["kills"] >= 3 and done["server"] == 1
    assert states["completed"] == len(jobs) and states["failed"] == 0, states
    assert len(ended) == len(jobs)
    assert order_violations(runs) == []


@pytest.mark.slow
def test_strict_order_holds_through_retries(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: Callable[..., Proc],
    private_server: Callable[..., ServerProcess],
) -> None:
    server = private_server(tmp_path / "data", appendonly=True)
    server.start()
    try:
        jobs = _jobs(50, 20, fail_rate=0.15)
        runs, states, _ = _run(tmp_path, monkeypatch, workers, server, jobs, faults=False)
    finally:
        with contextlib.suppress(Exception):
            server.kill()
    failures = sum(1 for r in runs if r.get("failed"))
    print(f"\nstrict with failures: {len(jobs)} jobs, {failures} failed runs retried, {states}")
    assert failures > 50
    assert states["completed"] == len(jobs) and states["failed"] == 0, states
    assert order_violations(runs) == []
