"""arq (in its own venv: arq pins redis-py < 6): the no-op function and WorkerSettings
(max_jobs 10; the other settings at arq's defaults, e.g. poll_delay 0.5 s)."""

import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

from bench.peers.tally import Tally

TALLY = Tally.from_env()


async def noop(ctx: Any, i: int = 0) -> None:
    TALLY.done()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    max_jobs = 10
