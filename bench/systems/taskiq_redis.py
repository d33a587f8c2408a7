"""Plain taskiq-redis: a ``RedisStreamBroker`` (JSON, no result backend, xread_count 10,
socket_timeout above xread_block, startup() before kicking), ``kiq()`` one awaited call at a time,
then ``asyncio.gather`` of kiq() in chunks; ``taskiq worker --workers 1 --max-async-tasks 10``
(ack when_saved, the default; WARNING spares it an INFO line per task)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

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
from bench.systems import CONCURRENCY, Context

NAME = "taskiq-redis"
STREAM = "bench:taskiq"

# The app: ``build(url)`` makes the broker and the two tasks (a no-op, and the pickup stamp);
# the worker imports ``tq_app:broker``, built from $BENCH_REDIS_URL.
APP = """\
import os, time
import redis.asyncio as aioredis
from taskiq_redis import RedisStreamBroker


def build(url):
    broker = RedisStreamBroker(
        url, queue_name="bench:taskiq", xread_block=2000, xread_count=10, socket_timeout=10
    )
    client = aioredis.Redis.from_url(url)

    @broker.task(task_name="noop")
    async def noop(i: int = 0) -> None:
        return None

    @broker.task(task_name="stamp")
    async def stamp() -> None:
        await client.rpush("bench:stamps", repr(time.time()))

    return broker, noop, stamp


if "BENCH_REDIS_URL" in os.environ:
    broker, noop, stamp = build(os.environ["BENCH_REDIS_URL"])
"""


def label_for(gather_chunk: int) -> str:
    return (
        f"taskiq-redis RedisStreamBroker (kiq / gather x{gather_chunk}; "
        "taskiq worker -w 1, 10 async)"
    )


def prepare(workdir: Path) -> None:
    (workdir / "tq_app.py").write_text(APP)


def load_app(workdir: Path) -> Any:
    spec = importlib.util.spec_from_file_location("tq_app", workdir / "tq_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tq_app"] = module  # taskiq looks the task's module up there
    spec.loader.exec_module(module)
    return module


def worker_argv() -> list[str]:
    argv = [sys.executable, "-m", "taskiq", "worker", "tq_app:broker", "--workers", "1"]
    return [*argv, "--max-async-tasks", str(CONCURRENCY), "--log-level", "WARNING"]


async def enqueue(
    ctx: Context, admin: aioredis.Redis, broker: Any, noop: Any
) -> tuple[float, float]:
    """(serial jobs/s, gathered jobs/s)."""
    n, serial, chunk = ctx.jobs, ctx.serial_jobs, ctx.gather_chunk
    await noop.kiq(0)  # warm-up (connection pool), removed with the stream
    await admin.delete(STREAM)
    await broker.startup()
    t = time.perf_counter()
    for i in range(serial):
        await noop.kiq(i)
    serial_rate = serial / (time.perf_counter() - t)
    t = time.perf_counter()
    for start in range(serial, n, chunk):
        await asyncio.gather(*(noop.kiq(i) for i in range(start, min(start + chunk, n))))
    bulk_rate = (n - serial) / (time.perf_counter() - t)
    length = await admin.xlen(STREAM)
    if length != n:
        raise BenchError(f"taskiq: stream length {length} after enqueue, not {n}")
    return serial_rate, bulk_rate


async def run_pass(ctx: Context, admin: aioredis.Redis, run: int) -> PassResult:
    res = PassResult(NAME, ctx.persistence, run, ctx.jobs, ctx.serial_jobs)
    broker, noop, stamp = load_app(ctx.workdir).build(ctx.url)
    await broker.startup()  # creates the consumer group at "$": kicks before it would be lost
    try:
        res.serial_rate, res.bulk_rate = await enqueue(ctx, admin, broker, noop)
        await drain(ctx, admin, stamp, res)
    finally:
        await broker.shutdown()
        with contextlib.suppress(Exception):
            await broker.connection_pool.disconnect()
    return res


async def acked(admin: aioredis.Redis) -> int:
    groups = await admin.xinfo_groups(STREAM)
    if not groups:
        return 0
    return int(groups[0]["entries-read"] or 0) - int(groups[0]["pending"])


async def drain(ctx: Context, admin: aioredis.Redis, stamp: Any, res: PassResult) -> None:
    log = ctx.workdir / f"tq-worker-{ctx.persistence}-{res.run}.log"
    await admin.config_resetstat()
    proc = ctx.children.spawn(worker_argv(), env=ctx.child_env(), cwd=ctx.workdir, log=log)
    tree = ProcessTree(proc, include_root=False)  # the forked worker, not the manager

    async def progress() -> int:
        return await acked(admin)

    try:
        follow = Drain(progress, tree.cpu, lambda: proc.poll() is None, ctx.server_pid)
        budget = ctx.time_left(max(120.0, ctx.jobs / 50))
        res.process_rate, res.worker_cpu_us, res.server_cpu_us = await watch_processing(
            follow, ctx.jobs, budget
        )
        res.server_calls = per_job(await command_counts(admin), ctx.jobs)
        if not tree.pids():
            raise BenchError("could not find taskiq's worker child process")
        res.pickup_ms = await measure_pickups(
            admin, stamp.kiq, progress, ctx.pickups, ctx.time_left(60.0)
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- worker log ---\n{tail(log)}") from None
    finally:
        res.worker_exit = ctx.children.stop(proc, grace=3.0)
