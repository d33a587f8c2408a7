"""cortexflow as a taskiq broker: ``@broker.task``, ``.kiq()``, ``wait_result()`` on the queues of
a queues.yaml, run by ``cortexflow up`` (docs/taskiq.md).

    from cortexflow.taskiq import broker_from_config

    broker = broker_from_config()  # ./queues.yaml (or $CORTEXFLOW_FILE)

    @broker.task(queue="emails", priority=5)
    async def send(to: str) -> str: ...

    task = await send.kiq("a@example.com")
    result = await task.wait_result(timeout=10)

Importing this module imports taskiq; ``import cortexflow`` does not.
"""

from __future__ import annotations

import os

from cortexflow.api.resolve import ConfigSource, load
from cortexflow.taskiq.backend import CortexflowResultBackend, TaskError
from cortexflow.taskiq.broker import CortexflowBroker, TaskFormatter
from cortexflow.worker.context import JobContext
from cortexflow.worker.env import ENV_REDIS_URL

__all__ = [
    "CortexflowBroker",
    "CortexflowResultBackend",
    "JobContext",
    "TaskError",
    "TaskFormatter",
    "broker_from_config",
]


def broker_from_config(
    config: ConfigSource = None, redis_url: str | None = None, *, queue: str | None = None
) -> CortexflowBroker:
    """The taskiq broker of a queues.yaml: its tasks go to the queues that say ``tasks:``.

    ``config``: a path (default ``$CORTEXFLOW_FILE``, else ``./queues.yaml``) or a loaded
    Config; loaded now, so a bad file fails here (ConfigError). ``redis_url`` as for
    QueueManager (inside a worker of ``cortexflow up``: that worker's server). ``queue``: the
    queue of tasks that name none (default: the only queue that runs tasks, if one)."""
    url = redis_url or os.environ.get(ENV_REDIS_URL) or None
    return CortexflowBroker(load(config), url, queue)
