"""Six queues in one worker process (`process:` in queues.yaml), one of them at full load: how
fast do the other five pick up a job?

    .venv/bin/python bench/shared_pickup.py                  # 200 pickups idle, 200 beside a flood
    .venv/bin/python bench/shared_pickup.py --pickups 50     # quicker

Starts a private valkey-server on a unix socket (as `up`'s embedded one) and one
`cortexflow worker --process shared` running six queues: ``flood`` (no-op handler, concurrency
50) and ``q1``..``q5`` (concurrency 5 each). Pickup: the time from just before one job is added
to one of q1..q5 (in turn) to its handler's first line (the handler pushes ``time.time()``),
with the worker otherwise idle, then again while ``flood`` has a backlog that keeps all its
50 slots busy (topped up so it never runs dry), which keeps the process's CPU at 100% of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Children, cpu_seconds, private_server
from cortexflow.config import load_config
from cortexflow.engine.connection import connect
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine

HANDLERS = """\
import os, time
import redis.asyncio as aioredis

_client = None

async def noop(data):
    return None

async def stamp(data):
    started = time.time()
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    await _client.rpush("bench:stamps", repr(started))
"""

QUEUES_YAML = """\
version: 1
defaults:
  process: shared
  retention: {completed: {count: 100}, failed: {count: 100}}
queues:
  flood: {handler: "shared_bench:noop", concurrency: 50}
""" + "".join(f'  q{i}: {{handler: "shared_bench:stamp", concurrency: 5}}\n' for i in range(1, 6))

FLOOD_BATCH = 200  # small adds: a big one would hold the server (and every pickup) up


async def pickups(url: str, config_path: Path, n: int) -> list[float]:
    config = load_config(config_path, check_imports=False)
    client = connect(url)
    engines = [QueueEngine(client, config.queue(f"q{i}"), "cortexflow") for i in range(1, 6)]
    out = []
    try:
        for k in range(n):
            await asyncio.sleep(0.02)
            t0 = time.time()
            await engines[k % 5].add("p", {})
            got = await client.blpop(["bench:stamps"], timeout=10)
            if got is None:
                raise SystemExit("a pickup took more than 10 s")
            out.append((float(got[1]) - t0) * 1000.0)
    finally:
        await client.aclose()
    return out


async def keep_flooded(url: str, config_path: Path, stop: asyncio.Event) -> int:
    """Keep flood's backlog above one batch; returns how many were added."""
    config = load_config(config_path, check_imports=False)
    client = connect(url)
    engine = QueueEngine(client, config.queue("flood"), "cortexflow")
    added = 0
    try:
        while not stop.is_set():
            if (await engine.stats())["waiting"] < FLOOD_BATCH:
                await engine.add_bulk([("f", {}, JobOptions())] * FLOOD_BATCH)
                added += FLOOD_BATCH
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()
    return added


def summary(label: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
    return (
        f"{label}: p50 {statistics.median(xs):.2f} ms, p99 {p99:.2f} ms, max {xs[-1]:.2f} ms "
        f"({len(xs)} pickups)"
    )


async def measure(url: str, cfg: Path, worker_pid: int, n: int) -> None:
    idle = await pickups(url, cfg, n)
    print(summary("idle process", idle), flush=True)
    stop = asyncio.Event()
    flood = asyncio.create_task(keep_flooded(url, cfg, stop))
    await asyncio.sleep(3)  # the backlog is there and every flood slot busy
    cpu0, t0 = cpu_seconds(worker_pid), time.monotonic()
    loaded = await pickups(url, cfg, n)
    cpu = (cpu_seconds(worker_pid) - cpu0) / (time.monotonic() - t0)
    stop.set()
    added = await flood
    print(summary("beside a flooded queue", loaded), flush=True)
    print(f"(worker CPU while flooded: {cpu:.0%} of a core; {added} flood jobs added)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pickups", type=int, default=200, help="pickups per phase (200)")
    p.add_argument(
        "--separate",
        action="store_true",
        help="the control: flood in a worker process of its own (what sharing costs)",
    )
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cf-shared-pickup-"))
    yaml_text = QUEUES_YAML
    if args.separate:
        yaml_text = yaml_text.replace("concurrency: 50}", "concurrency: 50, process: null}")
    (folder / "queues.yaml").write_text(yaml_text)
    (folder / "shared_bench.py").write_text(HANDLERS)
    children = Children()
    with private_server(folder / "server", appendonly=False, unix_socket=True) as server:
        url = server.url
        env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(folder)}
        argv = [sys.executable, "-m", "cortexflow", "worker", "--process", "shared",
                "-f", str(folder / "queues.yaml"), "--redis-url", url]  # fmt: skip
        worker = children.spawn(argv, env=env, cwd=folder, log=folder / "worker.log")
        if args.separate:
            flood_argv = [*argv[:4], "flood", *argv[6:]]
            children.spawn(flood_argv, env=env, cwd=folder, log=folder / "flood.log")
        try:
            deadline = time.monotonic() + 60
            while (folder / "worker.log").read_text().count("worker ready") < (
                5 if args.separate else 6
            ):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((folder / "worker.log").read_text())
                time.sleep(0.05)
            asyncio.run(measure(url, folder / "queues.yaml", worker.pid, args.pickups))
        finally:
            children.stop_all()
    print(f"load average {os.getloadavg()[0]:.1f} (2-core machine shared with other work)")
    subprocess.run(["rm", "-rf", str(folder)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
