"""`cortexflow up` as a whole: pick the queues, resolve the server (the embedded one if none is
configured), check it, then run the Supervisor's reconcile loop until it stops."""

from __future__ import annotations

import asyncio

from cortexflow.config.model import Config
from cortexflow.redact import redact_url
from cortexflow.supervisor.logmux import LogSink
from cortexflow.supervisor.loop import Supervisor, UpOptions
from cortexflow.supervisor.plan import (
    Command,
    log_names,
    process_specs,
    select_queues,
    worker_command,
)
from cortexflow.supervisor.reload import Loader
from cortexflow.supervisor.server import check_data_format, check_server, endpoint

__all__ = ["UpOptions", "run_up"]


def run_up(
    config: Config,
    sink: LogSink,
    *,
    options: UpOptions,
    loader: Loader,
    redis_override: str | None = None,
    command: Command = worker_command,
) -> int:
    """Supervise the queues until stopped; returns the exit code (0 after a clean stop)."""
    wanted = select_queues(config, options.queues)  # unknown names: UsageError before anything
    # The log's name column fits the children's names from the first line on.
    sink.fit(log_names(process_specs(wanted)))
    with endpoint(config, redis_override, sink.event) as (url, server):
        if server is not None:
            sink.event(
                f"embedded server (pid {server.pid}) on {redact_url(url)}, "
                f"data in {server.folder.path}"
            )

        async def main() -> int:
            await check_server(
                url, sink, embedded=server is not None, allow_eviction=config.redis.allow_eviction
            )
            await check_data_format(url, config)
            supervisor = Supervisor(
                config, url, sink, options=options, loader=loader, command=command, server=server
            )
            return await supervisor.run()

        return asyncio.run(main())
