"""`up` and its Redis server: which URL the workers use, restarting the embedded server it
runs, and the start-up check of a configured one.

With no Redis URL configured, `up` runs its folder's server (embedded/supervised.py) and stops it
last; the reconcile loop asks ServerWatch every tick to restart it, with the workers' backoff,
when it dies. With a URL, check_server makes sure it answers and refuses one that may evict
jobs; check_data_format, with either, that this release can work on the data there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from cortexflow.config.model import Config, RestartPolicy
from cortexflow.embedded.folder import data_dir_for
from cortexflow.embedded.supervised import SupervisedServer, supervised_server
from cortexflow.engine.connection import connect, ping
from cortexflow.engine.dataformat import ensure_format
from cortexflow.engine.memory import check_eviction
from cortexflow.supervisor.logmux import LogSink
from cortexflow.supervisor.policy import RestartHistory, Verdict, decide_after_exit, describe_exit


@contextlib.contextmanager
def endpoint(
    config: Config, override: str | None, log: Callable[[str], None] | None = None
) -> Iterator[tuple[str, SupervisedServer | None]]:
    """The URL the workers use, and the embedded server when `up` runs one (stopped last)."""
    url = override or config.redis.url
    if url:
        yield url, None
        return
    with supervised_server(data_dir_for(config), log=log) as server:
        yield server.url, server


class ServerWatch:
    """Restarts `up`'s embedded server when it dies; gives up when it keeps dying."""

    def __init__(self, server: SupervisedServer | None) -> None:
        self.server = server
        self.history = RestartHistory()
        self.restart_at: float | None = None
        self.started = time.monotonic()

    def tend(self, now: float, policy: RestartPolicy, event: Callable[[str], None]) -> bool:
        """One tick; False when the server keeps dying (the caller then stops `up`)."""
        server = self.server
        if server is None or server.alive():
            return True
        if self.restart_at is None:
            code = server.exit_code()
            decision = decide_after_exit(self.history, code, now - self.started, now, policy)
            self.history = decision.history
            if decision.verdict is not Verdict.RESTART:
                event(f"the embedded server keeps dying ({describe_exit(code)})")
                return False
            event(
                f"the embedded server (pid {server.pid}) {describe_exit(code)}; "
                f"restarting it in {decision.delay:.1f}s"
            )
            self.restart_at = now + decision.delay
        elif now >= self.restart_at:
            self.restart_at = None
            self.started = now
            server.restart()
            event(f"the embedded server restarted (pid {server.pid})")
        return True


async def check_server(url: str, sink: LogSink, embedded: bool, allow_eviction: bool) -> None:
    """RedisUnavailableError unless the server answers; EvictionPolicyError when it may evict
    jobs (its maxmemory-policy is not noeviction) and queues.yaml does not allow that; a
    warning when the policy cannot be read or is allowed. The embedded server is started with
    noeviction: nothing to check."""
    client = connect(url, retries=3)
    try:
        await ping(client, url)
        if embedded:
            return
        if warning := await check_eviction(client, url, allow_eviction):
            sink.event(warning)
    finally:
        await client.aclose()


async def check_data_format(url: str, config: Config) -> None:
    """DataFormatError unless this release can work on the data under the prefix (it migrates
    data of an older format it knows), before any worker starts (engine/dataformat.py)."""
    client = connect(url, retries=3)
    try:
        await ensure_format(client, config.redis.prefix, list(config.queues))
    finally:
        await client.aclose()
