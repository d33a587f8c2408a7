"""taskiq-redis: a RedisStreamBroker and a ListQueueBroker, each with the no-op task.

Stream settings as taskiq-redis advises: socket_timeout above xread_block, xread_count at the
concurrency; JSON serializer and no result backend (the defaults)."""

import os

from taskiq_redis import ListQueueBroker, RedisStreamBroker

from bench.peers.tally import Tally

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TALLY = Tally.from_env()

stream_broker = RedisStreamBroker(
    URL, queue_name="bench:taskiq", xread_block=2000, xread_count=10, socket_timeout=10
)
list_broker = ListQueueBroker(URL, queue_name="bench:taskiq:list")


@stream_broker.task(task_name="noop")
async def stream_noop(i: int = 0) -> None:
    TALLY.done()


@list_broker.task(task_name="noop")
async def list_noop(i: int = 0) -> None:
    TALLY.done()
