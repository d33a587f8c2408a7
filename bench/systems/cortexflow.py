"""cortexflow: ``QueueEngine.add`` / ``add_bulk`` (x1000) into a queue with every feature on,
drained by one real ``cortexflow worker`` process (concurrency 10)."""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.measure import (
    BenchError,
    Drain,
    PassResult,
    command_counts,
    measure_pickups,
    per_job,
    watch_processing,
)
from bench.procs import ProcessTree, tail
from bench.profile import start_profiler, stop_profiler
from bench.systems import Context
from cortexflow.config import load_config
from cortexflow.config.model import Config, QueueConfig, RedisConfig
from cortexflow.engine.connection import connect
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.queue import QueueEngine

NAME = "cortexflow"
PREFIX = "cortexflow"
QUEUE = "bench"
BULK_BATCH = 1000
PRIORITIES = tuple(JobOptions(priority=p) for p in range(4))

# A no-op; a job with {"stamp": 1} pushes its start time (idle pickup).
HANDLER = """\
import os, time
import redis.asyncio as aioredis

_client = None


async def handle(data):
    if "stamp" in data:
        started = time.time()
        global _client
        if _client is None:
            _client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        await _client.rpush("bench:stamps", repr(started))
    return None
"""

QUEUES_YAML = """\
# bench/systems/cortexflow.py's queues.yaml: every feature on, defaults elsewhere
version: 1
stop_timeout: 5s
queues:
  bench:
    handler: cf_handler:handle
    concurrency: 10
    rate_limit: {max: 1000000, duration: 1s}   # on, but never binds
    dead_letter: bench_dead
    # defaults: priority 0 (jobs carry 0-3), attempts 3, exponential backoff, timeout 5m,
    # lease 30s (heartbeat every 10s), max_stalls 2,
    # retention {completed: {age: 1h, count: 1000}, failed: {age: 7d, count: 10000}}
  bench_dead:
    handler: cf_handler:handle
"""


def label_for(gather_chunk: int) -> str:
    return f"cortexflow (add / add_bulk x{BULK_BATCH}; 1 worker process x 10)"


def prepare(workdir: Path) -> None:
    (workdir / "cf_handler.py").write_text(HANDLER)
    (workdir / "queues.yaml").write_text(QUEUES_YAML)


def build_config(workdir: Path, url: str) -> Config:
    loaded = load_config(workdir / "queues.yaml")
    return dataclasses.replace(loaded, redis=RedisConfig(url=url, prefix=PREFIX))


def worker_argv(file: str, url: str, custom: str | None = None, queue: str = QUEUE) -> list[str]:
    """`python -m cortexflow worker bench -f queues.yaml --redis-url URL`, or ``custom``
    (--cf-worker-cmd) with {python}, {queue}, {file} and {url} filled in."""
    if custom:
        fill = {"python": sys.executable, "queue": queue, "file": file, "url": url}
        return [part.format(**fill) for part in shlex.split(custom)]
    return [sys.executable, "-m", "cortexflow", "worker", queue, "-f", file, "--redis-url", url]


def schema_queue() -> QueueConfig:
    """A queue with a payload schema, to time add_bulk with validation on."""
    doc = {
        "type": "object",
        "properties": {"i": {"type": "integer", "minimum": 0}},
        "required": ["i"],
        "additionalProperties": False,
    }
    return QueueConfig(name="bench_schema", handler="cf_handler:handle", payload_schema_doc=doc)


async def add_bulk(engine: QueueEngine, start: int, stop: int) -> float:
    """Jobs ``start..stop`` in batches of BULK_BATCH; returns jobs/s."""
    t = time.perf_counter()
    for first in range(start, stop, BULK_BATCH):
        ids = range(first, min(first + BULK_BATCH, stop))
        await engine.add_bulk([("noop", {"i": i}, PRIORITIES[i % 4]) for i in ids])
    return (stop - start) / (time.perf_counter() - t)


async def enqueue(ctx: Context, engine: QueueEngine, schema: QueueEngine, res: PassResult) -> None:
    n, serial = ctx.jobs, ctx.serial_jobs
    # load the scripts once (EVALSHA, NOSCRIPT, SCRIPT LOAD) outside the timings
    await schema.add("noop", {"i": 0})
    await schema.obliterate(force=True)
    t = time.perf_counter()
    for i in range(serial):
        await engine.add("noop", {"i": i}, PRIORITIES[i % 4])
    res.serial_rate = serial / (time.perf_counter() - t)
    res.bulk_rate = await add_bulk(engine, serial, n)
    # add_bulk with a payload schema (validation per job), into another queue, then gone
    res.bulk_schema_rate = await add_bulk(schema, 0, n - serial)
    await schema.obliterate(force=True)
    stats = await engine.stats()
    if stats["waiting"] != n:
        raise BenchError(f"cortexflow: {stats['waiting']} waiting after enqueue, not {n}")


async def run_pass(ctx: Context, admin: aioredis.Redis, run: int) -> PassResult:
    res = PassResult(NAME, ctx.persistence, run, ctx.jobs, ctx.serial_jobs)
    config = build_config(ctx.workdir, ctx.url)
    client = connect(ctx.url)
    try:
        engine = QueueEngine(client, config.queue(QUEUE), PREFIX)
        await enqueue(ctx, engine, QueueEngine(client, schema_queue(), PREFIX), res)
        await drain(ctx, admin, engine, res)
    finally:
        await client.aclose()
    return res


async def drain(ctx: Context, admin: aioredis.Redis, engine: QueueEngine, res: PassResult) -> None:
    """One worker process drains the queue, then serves the idle pickups."""
    meta = QueueKeys(PREFIX, QUEUE).meta
    log = ctx.workdir / f"cf-worker-{ctx.persistence}-{res.run}.log"
    await admin.config_resetstat()
    argv = worker_argv(str(ctx.workdir / "queues.yaml"), ctx.url, ctx.cf_worker_cmd)
    proc = ctx.children.spawn(argv, env=ctx.child_env(), cwd=ctx.workdir, log=log)

    async def completed() -> int:
        return int(await admin.hget(meta, "completed_total") or 0)

    name = f"cf-worker-{ctx.persistence}-{res.run}"
    profiler = (
        await start_profiler(ctx.children, ctx.profile, proc.pid, name) if ctx.profile else None
    )
    try:
        tree = ProcessTree(proc, include_root=True)
        follow = Drain(completed, tree.cpu, lambda: proc.poll() is None, ctx.server_pid)
        budget = ctx.time_left(max(120.0, ctx.jobs / 100))
        res.process_rate, res.worker_cpu_us, res.server_cpu_us = await watch_processing(
            follow, ctx.jobs, budget
        )
        res.server_calls = per_job(await command_counts(admin), ctx.jobs)
        if profiler is not None:
            stop_profiler(profiler)
            profiler = None
        res.failed = int(await admin.hget(meta, "failed_total") or 0)
        res.pickup_ms = await measure_pickups(
            admin,
            lambda: engine.add("noop", {"stamp": 1}),
            completed,
            ctx.pickups,
            ctx.time_left(60.0),
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- worker log ---\n{tail(log)}") from None
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        res.worker_exit = ctx.children.stop(proc)
