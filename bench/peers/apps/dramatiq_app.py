"""dramatiq: the RedisBroker (namespace "dramatiq", queue "default") and the no-op actor."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers.tally import Tally

TALLY = Tally.from_env()
broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop(i: int = 0) -> None:
    TALLY.done()
