"""saq: the queue, the no-op function and the worker settings (concurrency 10)."""

import os
from typing import Any

from saq import Queue

from bench.peers.tally import Tally

TALLY = Tally.from_env()
queue = Queue.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), name="bench")


async def noop(ctx: Any, *, i: int = 0) -> None:
    TALLY.done()


settings = {"queue": queue, "functions": [noop], "concurrency": 10}
