"""Worker CPU per job: a plain handler vs a plain taskiq task vs a task with one dependency.

    .venv/bin/python bench/taskiq_tasks.py               # 20,000 jobs per variant, 3 rounds
    .venv/bin/python bench/taskiq_tasks.py --jobs 5000 --rounds 1

One private valkey-server; per variant and round: FLUSHALL, N no-op jobs added in bulk (the
tasks through cortexflow.taskiq's ``bulk()``), then one `cortexflow worker` process (concurrency
10) drains them while its CPU is sampled (from 5% to 100% done, as bench/engine.py). The
variants alternate their order between rounds; the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/taskiq_tasks.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from bench.measure import Drain, watch_processing
from bench.procs import Children, ProcessTree, loadavg, private_server
from cortexflow.config import load_config
from cortexflow.engine.connection import connect
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.queue import QueueEngine
from cortexflow.taskiq import broker_from_config

MODULE = """\
from pathlib import Path
from typing import Annotated
from taskiq import TaskiqDepends
from cortexflow.taskiq import broker_from_config

broker = broker_from_config(Path(__file__).with_name("queues.yaml"))

async def handle(data):
    return None

@broker.task(queue="task")
async def noop(i: int) -> None:
    return None

def session():
    yield 1

@broker.task(queue="dep")
async def with_dep(i: int, s: Annotated[int, TaskiqDepends(session)]) -> None:
    return None
"""

QUEUES = """\
version: 1
stop_timeout: 5s
queues:
  handler: {handler: bench_tasks:handle, concurrency: 10}
  task: {tasks: bench_tasks:broker, concurrency: 10}
  dep: {tasks: bench_tasks:broker, concurrency: 10}
"""

VARIANTS = {"handler": "plain handler", "task": "plain taskiq task", "dep": "task, 1 dependency"}


async def fill(folder: Path, url: str, variant: str, n: int) -> None:
    config = load_config(folder / "queues.yaml")
    if variant == "handler":
        client = connect(url)
        try:
            engine = QueueEngine(client, config.queue("handler"), "cortexflow")
            for first in range(0, n, 1000):
                jobs = [("noop", {"i": i}, None) for i in range(first, min(first + 1000, n))]
                await engine.add_bulk(jobs)
        finally:
            await client.aclose()
        return
    sys.path.insert(0, str(folder))
    import bench_tasks  # type: ignore[import-not-found]

    broker = broker_from_config(config, url)
    task = bench_tasks.noop if variant == "task" else bench_tasks.with_dep
    for first in range(0, n, 1000):
        async with broker.bulk():
            for i in range(first, min(first + 1000, n)):
                await task.kicker().with_broker(broker).kiq(i)
    await broker.shutdown()


async def drain(
    folder: Path, url: str, server_pid: int, variant: str, n: int, children: Children
) -> float:
    """Worker CPU microseconds per job while one worker process drains ``n`` jobs."""
    admin = aioredis.Redis.from_url(url)
    meta = QueueKeys("cortexflow", variant).meta
    argv = [sys.executable, "-m", "cortexflow", "worker", variant, "-f", "queues.yaml"]
    argv += ["--redis-url", url]
    proc = children.spawn(argv, env=_env(), cwd=folder, log=folder / f"worker-{variant}.log")
    try:

        async def completed() -> int:
            return int(await admin.hget(meta, "completed_total") or 0)

        tree = ProcessTree(proc, include_root=True)
        follow = Drain(completed, tree.cpu, lambda: proc.poll() is None, server_pid)
        _, cpu_us, _ = await watch_processing(follow, n, max(120.0, n / 100))
        return cpu_us
    finally:
        children.stop(proc)
        await admin.aclose()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CORTEXFLOW_")}


async def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-tasks-"))
    (folder / "bench_tasks.py").write_text(MODULE)
    (folder / "queues.yaml").write_text(QUEUES)
    children = Children()
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    print(f"load average before: {loadavg():.2f}")
    try:
        with private_server(folder / "server", appendonly=False) as server:
            url = server.url
            assert server.pid is not None
            order = list(VARIANTS)
            for round_ in range(args.rounds):
                for variant in order if round_ % 2 == 0 else reversed(order):
                    admin = aioredis.Redis.from_url(url)
                    await admin.flushall()
                    await admin.aclose()
                    await fill(folder, url, variant, args.jobs)
                    us = await drain(folder, url, server.pid, variant, args.jobs, children)
                    results[variant].append(us)
                    print(f"round {round_ + 1} {VARIANTS[variant]:<20} {us:6.1f} us/job")
    finally:
        children.stop_all()
    print(f"\nworker CPU per job, median of {args.rounds} ({args.jobs:,} jobs, load after "
          f"{loadavg():.2f}):")  # fmt: skip
    base = statistics.median(results["handler"])
    for variant, label in VARIANTS.items():
        us = statistics.median(results[variant])
        print(f"  {label:<20} {us:6.1f} us/job  ({us - base:+5.1f} vs the handler)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
