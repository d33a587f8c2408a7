"""What groups cost: worker CPU per job with and without them, and fetch with a huge backlog.

    .venv/bin/python bench/groups.py                           # defaults below
    .venv/bin/python bench/groups.py --jobs 5000 --rounds 1 --backlog 100000 --groups 10000

Starts a private valkey-server (no persistence, unix socket, as the embedded default).

1. CPU per job: two queues alike but for `group:` (no-op handler, concurrency 10; the grouped
   one spreads its jobs over 1,000 groups of concurrency 1, so the groups never hold the worker
   back). For each round and queue: pause it, add --jobs jobs, note the CPU time of its
   `cortexflow worker` process and of the server, resume, wait until all completed; prints the
   CPU per job of each (median of the rounds) and the ratio grouped / plain.
2. A backlog: --backlog waiting jobs spread over --groups groups, added 1,000 per call; prints
   the server memory per waiting job (INFO used_memory growth / jobs), then runs --calls
   `finish_fetch` calls of 10 jobs (the worker's steady state) and prints their p50/p99/max from
   SLOWLOG (every call logged) and the server's CPU time per call (which waiting for a core does
   not inflate). SLOWLOG measures time inside the server; on a busy machine a call
   descheduled mid-way counts the wait too. --plain-backlog does the same on an ungrouped queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench.procs import Children, cpu_seconds, loadavg, private_server
from cortexflow.config import load_config
from cortexflow.config.model import GroupConfig, QueueConfig, Retention, RetentionRule
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.outcomes import Outcome, OutcomeKind
from cortexflow.engine.queue import QueueEngine

CONFIG = """
queues:
  plain:
    handler: noop:handle
    concurrency: 10
    retention: false
  grouped:
    handler: noop:handle
    concurrency: 10
    retention: false
    group: {key: /g, concurrency: 1}
"""


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per CPU round (20,000)")
    p.add_argument("--rounds", type=int, default=3, help="CPU rounds per queue (3)")
    p.add_argument("--backlog", type=int, default=1_000_000, help="waiting jobs (1,000,000)")
    p.add_argument("--groups", type=int, default=100_000, help="groups of the backlog (100,000)")
    p.add_argument("--calls", type=int, default=2000, help="finish_fetch calls timed (2,000)")
    p.add_argument("--plain-backlog", action="store_true", help="also an ungrouped backlog")
    p.add_argument("--skip-cpu", action="store_true", help="only the backlog part")
    return p.parse_args(argv)


async def _completed(client: Any, queue: str) -> int:
    return int(await client.hget(f"{{cortexflow:{queue}}}:meta", "completed_total") or 0)


async def _cpu_round(
    engine: QueueEngine, worker_pid: int, server_pid: int, jobs: int
) -> tuple[float, float]:
    """(worker, server) CPU seconds per job for one batch of ``jobs`` jobs."""
    await engine.pause()
    grouped = engine.config.group is not None
    for start in range(0, jobs, 1000):
        await engine.add_bulk(
            [("n", {"g": f"g{i % 1000}"} if grouped else {}, None)
             for i in range(start, min(start + 1000, jobs))]
        )  # fmt: skip
    before = await _completed(engine.client, engine.name)
    w0, s0 = cpu_seconds(worker_pid), cpu_seconds(server_pid)
    await engine.resume()
    while await _completed(engine.client, engine.name) < before + jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return (cpu_seconds(worker_pid) - w0) / jobs, (cpu_seconds(server_pid) - s0) / jobs


async def cpu_part(args: argparse.Namespace, url: str, server_pid: int, folder: Path) -> None:
    cfg = folder / "queues.yaml"
    cfg.write_text(textwrap.dedent(CONFIG))
    (folder / "noop.py").write_text("async def handle(data):\n    return None\n")
    config = load_config(cfg)
    children = Children()
    client = connect(url)
    try:
        pids = {}
        for queue in ("plain", "grouped"):
            proc = children.spawn(
                [sys.executable, "-m", "cortexflow", "worker", queue, "-f", str(cfg),
                 "--redis-url", url],
                env=dict(os.environ), cwd=folder, log=folder / f"{queue}.log",
            )  # fmt: skip
            pids[queue] = proc.pid
        for queue in pids:
            while int(await client.zcard(f"{{cortexflow:{queue}}}:workers")) < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        found: dict[str, list[tuple[float, float]]] = {"plain": [], "grouped": []}
        for r in range(args.rounds):
            for queue in ("plain", "grouped"):
                engine = QueueEngine(client, config.queues[queue], "cortexflow")
                found[queue].append(await _cpu_round(engine, pids[queue], server_pid, args.jobs))
                w, s = found[queue][-1]
                print(f"  round {r + 1} {queue:8} worker {w * 1e6:6.1f} us/job, server "
                      f"{s * 1e6:6.1f} us/job (load {loadavg():.1f})")  # fmt: skip
        med = {
            q: (statistics.median(w for w, _ in v), statistics.median(s for _, s in v))
            for q, v in found.items()
        }
        for q, (w, s) in med.items():
            print(f"{q:8} worker CPU {w * 1e6:6.1f} us/job  server CPU {s * 1e6:6.1f} us/job")
        print(
            f"grouped / plain: worker {med['grouped'][0] / med['plain'][0]:.2f}x, "
            f"server {med['grouped'][1] / med['plain'][1]:.2f}x"
        )
    finally:
        children.stop_all()
        await client.aclose()


async def backlog_part(args: argparse.Namespace, url: str, server_pid: int, grouped: bool) -> None:
    client = connect(url)
    keep = Retention(RetentionRule(None, 0), RetentionRule(None, 0))
    group = GroupConfig(key=("/g",)) if grouped else None
    name = "backlog" if grouped else "plainbacklog"
    q = QueueConfig(name=name, handler="x:y", retention=keep, group=group)
    engine = QueueEngine(client, q, "cortexflow")
    try:
        before = int((await client.info("memory"))["used_memory"])
        t0 = time.monotonic()
        for start in range(0, args.backlog, 1000):
            await engine.add_bulk(
                [("n", {"g": f"user-{i % args.groups}"}, None)
                 for i in range(start, min(start + 1000, args.backlog))]
            )  # fmt: skip
        added = time.monotonic() - t0
        used = int((await client.info("memory"))["used_memory"]) - before
        what = f"in {args.groups:,} groups" if grouped else "without groups"
        print(
            f"{args.backlog:,} waiting jobs {what}: added in {added:.0f}s, "
            f"{used / args.backlog:.0f} bytes of server memory per waiting job"
        )
        consumer = QueueConsumer(engine, "bench", client)
        await client.config_set("slowlog-log-slower-than", 0)
        await client.config_set("slowlog-max-len", 1_000_000)
        await client.slowlog_reset()
        fetched = (await consumer.fetch(10)).jobs
        cpu0 = cpu_seconds(server_pid)
        for _ in range(args.calls):
            done = [Outcome(OutcomeKind.COMPLETED, f.job.id, f.token) for f in fetched]
            _, got = await consumer.finish_and_fetch(done, 10)
            fetched = got.jobs if got else []
        cpu = (cpu_seconds(server_pid) - cpu0) / args.calls
        entries = await client.slowlog_get(1_000_000)
        await client.config_set("slowlog-log-slower-than", 10000)
        ms = sorted(e["duration"] / 1000.0 for e in entries if e["command"].startswith(b"EVALSHA"))
        p50, p99 = ms[len(ms) // 2], ms[int(len(ms) * 0.99)]
        print(
            f"  finish_fetch of 10 ({len(ms):,} calls): p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
            f"max {ms[-1]:.3f} ms; server CPU {cpu * 1000:.3f} ms per call (load {loadavg():.1f})"
        )
        await engine.obliterate(force=True)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_server(Path(tmp) / "server", appendonly=False, unix_socket=True) as server,
    ):
        url = server.url
        pid = server.pid
        assert pid is not None
        print(f"valkey at {url}, load average {loadavg():.1f}")
        if not args.skip_cpu:
            asyncio.run(cpu_part(args, url, pid, Path(tmp)))
        if args.backlog > 0:  # --backlog 0: the CPU part alone
            asyncio.run(backlog_part(args, url, pid, grouped=True))
        if args.plain_backlog and args.backlog > 0:
            asyncio.run(backlog_part(args, url, pid, grouped=False))


if __name__ == "__main__":
    main()
