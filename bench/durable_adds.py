"""What ``redis.durable_adds: true`` costs: adds with and without WAITAOF.

    .venv/bin/python bench/durable_adds.py            # 500 serial adds, 20 bulk adds of 1,000

Starts a private valkey-server with appendonly yes / appendfsync everysec (the embedded
server's settings), then times serial ``add`` calls and ``add_bulk`` calls of 1,000 jobs, each
with durable_adds off and on, alternating, and prints adds/s and the latency per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine import connect
from cortexflow.engine.queue import QueueEngine


async def run(url: str, serial: int, bulks: int) -> None:
    client = connect(url)
    q = QueueConfig(name="d", handler="x:y")
    print("| durable_adds | serial add: jobs/s | p50 / max per add | add_bulk x1000: jobs/s |")
    print("|---|---|---|---|")
    for durable in (False, True, False, True):
        engine = QueueEngine(client, q, "cortexflow", durable_adds=durable)
        times = []
        t0 = time.monotonic()
        for i in range(serial):
            t = time.monotonic()
            await engine.add("n", {"i": i})
            times.append(time.monotonic() - t)
        rate = serial / (time.monotonic() - t0)
        t0 = time.monotonic()
        for _ in range(bulks):
            await engine.add_bulk([("n", {"i": 1}, None)] * 1000)
        bulk_rate = bulks * 1000 / (time.monotonic() - t0)
        print(
            f"| {'on' if durable else 'off'} | {rate:,.0f} | "
            f"{statistics.median(times) * 1000:.2f} / {max(times) * 1000:.1f} ms | "
            f"{bulk_rate:,.0f} |"
        )
        await engine.drain()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serial", type=int, default=500)
    parser.add_argument("--bulks", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), appendonly=True)
        server.start()
        try:
            asyncio.run(run(server.url, args.serial, args.bulks))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
