"""Soak: the shipped queues under `cortexflow up` at a steady rate for a long time.

    .venv/bin/python -m bench.soak                          # 60 min, 300 notifications/s
    .venv/bin/python -m bench.soak --minutes 5 --rate 100   # a quick look
    .venv/bin/python -m bench.soak --mix 50                 # + 50/s of the synthetic mix
    .venv/bin/python -m bench.soak --redis-url redis://host:6379/0

A copy of the repo's queues.yaml (and its payload schemas) in a fresh folder runs under
`cortexflow up` -- by default on its embedded server, on the unix socket, as a user runs it.
The scenario: ``--rate`` notifications a second, 95% in-app (into ``--users`` inboxes), 5% of
type email without an address, which fail for good and go to the dead-letter queue. ``--mix
R`` adds R jobs a second to a synthetic queue (bench/soak_mix.py): 80% complete, 10% fail once
and complete on their retry, 5% fail for good, 5% are delayed 2 s. Jobs are added in batches
(add_bulk) every 0.1 s. Every ``--kill-every`` seconds one worker process, picked at random,
gets SIGKILL (the supervisor starts another).

Every ``--every`` seconds a sample: each worker's RSS, the server's used_memory and key count,
latency p50/p99 of the notifications (enqueue -> completion, of the newest completed jobs since
the previous sample; the synthetic queue's go to ``--out`` as ``mix_latencies_ms``), and counts
(added, completed, failed for good, dead-lettered, waiting, active). Samples go to ``--out``
(JSON lines) as they are taken; at the end a table (a row every ``--table-every`` seconds),
then: whether server and worker memory stayed within 10% once retention caps are reached (the
samples after ``--settle`` minutes), and whether any job was lost (after adding stops, the
queues drain; every added job must be completed or failed for good, and every failure for good
must be in the dead-letter queue).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.measure import BenchError
from bench.procs import Children, cpu_seconds, tail
from bench.session import session
from bench.soak_report import flatness, losses, render
from cortexflow import get_queue_manager
from cortexflow.api.manager import QueueManager
from cortexflow.engine import history, registry

REPO = Path(__file__).resolve().parent.parent
NOTIFY, MIX, DLQ = "notifications", "soak-mix", "dead-letters"
TICK = 0.1  # seconds between two batches of adds
LATENCY_SAMPLE = 300  # newest completed jobs read per queue and sample


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="how long to add jobs (60)")
    p.add_argument("--rate", type=float, default=300.0, help="notifications a second (300)")
    p.add_argument("--mix", type=float, default=0.0, help="synthetic jobs a second (0: none)")
    p.add_argument(
        "--mix-failed-count",
        type=int,
        default=1000,
        help="the synthetic queue's retention.failed.count (1000: full within minutes at --mix 50)",
    )
    p.add_argument("--users", type=int, default=100, help="in-app inboxes written to (100)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples (10)")
    p.add_argument("--table-every", type=float, default=300.0, help="seconds a row (300)")
    p.add_argument("--kill-every", type=float, default=300.0, help="SIGKILL a worker (300; 0 no)")
    p.add_argument("--settle", type=float, default=20.0, help="minutes before memory is judged")
    p.add_argument("--drain", type=float, default=1800.0, help="most seconds to empty (1800)")
    p.add_argument("--redis-url", help="a Redis of your own (default: the embedded server)")
    p.add_argument("--out", type=Path, help="JSON lines of every sample (default: none)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    return p.parse_args(argv)


def project(folder: Path, mix: bool, mix_failed_count: int = 1000) -> Path:
    """The shipped queues.yaml and schemas, plus the synthetic queue when ``mix``.

    The synthetic queue keeps ``mix_failed_count`` failed jobs (the shipped default is 10,000
    for 7 days: at 2.5 failures a second that cap fills only after ~67 minutes, so an hour's
    run never reaches the flat part).
    """
    shutil.copytree(REPO / "schemas", folder / "schemas")
    doc = yaml.safe_load((REPO / "queues.yaml").read_text())
    if mix:
        shutil.copy(REPO / "bench" / "soak_mix.py", folder / "soak_mix.py")
        doc["queues"][MIX] = {
            "handler": "soak_mix:handle",
            "concurrency": 20,
            "retention": {"failed": {"age": "7d", "count": mix_failed_count}},
        }
    path = folder / "queues.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def notification(i: int, users: int) -> dict[str, Any]:
    """Job ``i`` of the scenario: in-app, or (1 in 20) an email without an address."""
    user = f"user-{i % users}"
    if i % 20 == 7:
        return {"name": "notify", "data": {"userId": user, "type": "email", "message": "hi"}}
    data = {"userId": user, "type": "in-app", "title": "New", "message": f"message {i}"}
    return {"name": "notify", "data": data}


MIX_KINDS = ["ok"] * 16 + ["retry"] * 2 + ["fail", "delayed"]


def mix_job(i: int) -> dict[str, Any]:
    kind = MIX_KINDS[i % 20]
    job: dict[str, Any] = {"name": kind, "data": {"kind": kind, "n": i}}
    if kind == "delayed":
        job["opts"] = {"delay": 2000}
    return job


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path, manager: QueueManager) -> None:
        self.args = args
        self.config = folder / "queues.yaml"
        self.manager = manager
        self.queues = manager.queue_names
        self.added = dict.fromkeys(self.queues, 0)
        self.samples: list[dict[str, Any]] = []
        self.kills: list[dict[str, Any]] = []
        self.start = time.monotonic()
        self.adding = True
        self.server_pid = server_pid(folder) if not args.redis_url else None
        self._since = dict.fromkeys(self.queues, 0)  # ms: completions read up to
        self._out = open(args.out, "a") if args.out else None  # noqa: SIM115

    async def produce(self, seconds: float) -> None:
        """Open loop: by time t, rate * t jobs are added (in batches of at most 500)."""
        kinds = [(NOTIFY, self.args.rate, lambda i: notification(i, self.args.users))]
        if self.args.mix > 0:
            kinds.append((MIX, self.args.mix, mix_job))
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            for queue, rate, make in kinds:
                due = int(rate * elapsed) - self.added[queue]
                while due > 0:
                    n = min(due, 500)
                    first = self.added[queue]
                    await self.manager.add_bulk(queue, [make(first + k) for k in range(n)])
                    self.added[queue] += n
                    due -= n
            await asyncio.sleep(TICK)
        self.adding = False

    async def kill_loop(self) -> None:
        every = self.args.kill_every
        while every > 0 and self.adding:
            await asyncio.sleep(every)
            workers = worker_pids(self.config)
            if not workers or not self.adding:
                continue
            pid, queue = random.choice(sorted(workers.items()))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.kills.append({"t": self.elapsed(), "pid": pid, "queue": queue})
                print(f"[{self.elapsed():7.0f}s] SIGKILL worker {pid} ({queue})", file=sys.stderr)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def sample_loop(self) -> None:
        while self.adding:
            await asyncio.sleep(self.args.every)
            self.record(await self.sample())

    def record(self, s: dict[str, Any]) -> None:
        self.samples.append(s)
        if self._out is not None:
            self._out.write(json.dumps(s) + "\n")
            self._out.flush()
        print(
            f"[{s['t']:7.0f}s] added {s['added']:,} completed {s['completed']:,} failed "
            f"{s['failed']:,} waiting {s['waiting']:,} active {s['active']} | server "
            f"{s['used_memory'] / 2**20:.1f} MiB, {s['keys']:,} keys | workers "
            f"{s['worker_rss_max'] / 2**20:.1f} MiB max | p50/p99 {s['p50_ms']:.0f}/"
            f"{s['p99_ms']:.0f} ms",
            file=sys.stderr,
        )

    async def sample(self) -> dict[str, Any]:
        client = await self.manager.redis_client()
        prefix = self.manager.config.redis.prefix
        stats = await self.manager.get_all_queue_stats()
        totals = await history.totals(client, prefix, self.queues)
        failed = await history.failed_for_good(client, prefix, self.queues)
        memory = await client.info("memory")
        keys = int(await client.dbsize())
        latencies = await self.latencies(client, NOTIFY)
        mix = await self.latencies(client, MIX)
        workers = worker_pids(self.config)
        rss = {str(pid): rss_bytes(pid) for pid in workers}
        cpu = {str(pid): cpu_of(pid) for pid in workers}
        by_queue = {s["queueName"]: s for s in stats}
        return {
            "t": round(self.elapsed(), 1),
            "added": sum(self.added.values()),
            "added_by_queue": dict(self.added),
            "completed_by_queue": {q: totals[q].completed for q in self.queues},
            "failed_by_queue": failed,
            "completed": sum(t.completed for q, t in totals.items() if q != DLQ),
            "failed": sum(n for q, n in failed.items() if q != DLQ),
            "dead_lettered": totals[DLQ].completed + failed.get(DLQ, 0),
            "queued_by_queue": {
                q: int(s["waiting"]) + int(s["delayed"]) + int(s["active"])
                for q, s in by_queue.items()
            },
            "waiting": sum(int(s["waiting"]) + int(s["delayed"]) for s in by_queue.values()),
            "active": sum(int(s["active"]) for s in by_queue.values()),
            "used_memory": int(memory["used_memory"]),
            "server_rss": rss_bytes(self.server_pid) if self.server_pid else None,
            "keys": keys,
            "workers": {
                pid: {"queue": workers[int(pid)], "rss": b, "cpu_s": cpu[pid]}
                for pid, b in rss.items()
            },
            "server_cpu_s": cpu_of(self.server_pid) if self.server_pid else None,
            "load1": os.getloadavg()[0],
            "worker_rss_max": max(rss.values(), default=0),
            "latencies_ms": latencies,
            "p50_ms": quantile(latencies, 0.50),
            "p99_ms": quantile(latencies, 0.99),
            "mix_latencies_ms": mix,
            "kills": len(self.kills),
        }

    async def latencies(self, client: Any, queue: str) -> list[float]:
        """Enqueue -> completion (ms, less the requested delay) of the jobs of ``queue``
        completed since the previous sample: the newest LATENCY_SAMPLE of them. A retried job's
        includes its failed run and the backoff."""
        if queue not in self.queues or not self.added[queue]:
            return []
        keys = self.manager.get_queue(queue).keys
        done = await client.zrevrangebyscore(
            keys.completed, "+inf", self._since[queue] + 1, 0, LATENCY_SAMPLE, withscores=True
        )
        if not done:
            return []
        self._since[queue] = int(max(score for _, score in done))
        async with client.pipeline(transaction=False) as pipe:
            for job_id, _ in done:
                pipe.hmget(keys.job_prefix + job_id.decode(), "created_at", "delay")
            rows = await pipe.execute()
        return [
            finished - float(created) - float(delay or 0)
            for (_, finished), (created, delay) in zip(done, rows, strict=True)
            if created is not None
        ]

    async def drain(self) -> bool:
        """Wait until no queue has a waiting, delayed or active job, sampling as before, while
        the queues make progress (at most ``--drain`` seconds in all; 120 s without a job
        finishing ends it); False if they did not empty."""
        deadline = time.monotonic() + self.args.drain
        progress, fewest = time.monotonic(), 1 << 62
        while time.monotonic() < deadline and time.monotonic() - progress < 120.0:
            stats = await self.manager.get_all_queue_stats()
            left = sum(int(s["waiting"]) + int(s["active"]) + int(s["delayed"]) for s in stats)
            if not left:
                await asyncio.sleep(2.0)  # the dead-letter copier runs after the finish
                return True
            if left < fewest:
                progress, fewest = time.monotonic(), left
            await asyncio.sleep(self.args.every)
            sample = await self.sample()
            sample["draining"] = True
            self.record(sample)
        return False

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_pid(folder: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads((folder / ".cortexflow" / "server.json").read_text())["pid"])
    return None


def worker_pids(config: Path) -> dict[int, str]:
    """pid -> what it runs (its queues) of the `cortexflow worker` processes of ``config``."""
    found: dict[int, str] = {}
    target = str(config.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "worker" in argv and target in argv and "cortexflow" in argv:
            # `worker QUEUE... -f FILE` or `worker --process NAME -f FILE`: what it runs
            what = argv[argv.index("worker") + 1 : argv.index("-f")]
            found[int(entry)] = " ".join(what)
    return found


def cpu_of(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return cpu_seconds(pid)
    return None


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


async def wait_server(folder: Path, up_log: Path, deadline: float) -> None:
    """Until `cortexflow up` has its embedded server up (server.json written by it)."""
    state = folder / ".cortexflow" / "server.json"
    while not state.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"the embedded server did not start\n{tail(up_log)}")
        await asyncio.sleep(0.2)


async def wait_workers(soak: Soak, up_log: Path, deadline: float) -> None:
    """Until every queue has a live worker."""
    client = await soak.manager.redis_client()
    while True:
        prefix = soak.manager.config.redis.prefix
        live = await registry.live_worker_counts(client, prefix, soak.queues)
        if all(live.values()):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"workers did not start: {live}\n{tail(up_log)}")
        await asyncio.sleep(0.5)


async def soak_run(args: argparse.Namespace, folder: Path, up_log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 120.0
    if not args.redis_url:
        await wait_server(folder, up_log, deadline)
    async with get_queue_manager(config=folder / "queues.yaml", redis_url=args.redis_url) as m:
        soak = Soak(args, folder, m)
        try:
            await wait_workers(soak, up_log, deadline)
            soak.start = time.monotonic()
            baseline = await soak.sample()
            tasks = [soak.sample_loop(), soak.kill_loop()]
            background = [asyncio.create_task(t) for t in tasks]
            await soak.produce(args.minutes * 60.0)
            for task in background:
                task.cancel()
            drained = await soak.drain()
            final = await soak.sample()
            final["final"] = True
            soak.record(final)
            return {
                "baseline": baseline,
                "samples": soak.samples,
                "final": final,
                "drained": drained,
                "kills": soak.kills,
            }
        finally:
            soak.close()


def run(args: argparse.Namespace, folder: Path, children: Children) -> dict[str, Any]:
    config = project(folder, args.mix > 0, args.mix_failed_count)
    env = {k: v for k, v in os.environ.items() if k not in ("CORTEXFLOW_PARENT_PID", "REDIS_URL")}
    argv = [sys.executable, "-m", "cortexflow", "up"]
    if args.redis_url:
        argv += ["--redis-url", args.redis_url]
    up_log = folder / "up.log"
    up = children.spawn(argv, env=env, cwd=config.parent, log=up_log)
    try:
        return asyncio.run(soak_run(args, folder, up_log))
    finally:
        children.stop(up, grace=30.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="cortexflow-soak-"))
    good = False
    with session(folder, keep=args.keep) as s:
        result = run(args, folder, s.children)
        flat = flatness(result["samples"], args.settle * 60.0)
        lost = losses(result)
        print(render(args, result, flat, lost))
        good = flat["flat"] and not lost["lost"] and result["drained"]
    return s.code or (0 if good else 1)


if __name__ == "__main__":
    sys.exit(main())
