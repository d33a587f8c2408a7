"""Celery on the Redis transport, no result backend; the no-op task."""

import os

from celery import Celery

from bench.peers.tally import Tally

TALLY = Tally.from_env()
app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(i: int = 0) -> None:
    TALLY.done()
