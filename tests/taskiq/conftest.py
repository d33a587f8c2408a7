"""taskiq tasks on cortexflow: a project whose queues say ``tasks: <module>:broker``, its module
imported here (the producer side), and its queues' workers run in this process (QueueWorker) or
under a real `cortexflow up` (``start_up``)."""

from __future__ import annotations

import contextlib
import importlib
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cortexflow.config import load_config
from cortexflow.config.model import Config
from cortexflow.worker.env import ENV_REDIS_URL
from cortexflow.worker.queue_worker import QueueWorker
from tests.helpers.project import write_project
from tests.supervisor.conftest import start_up

__all__ = ["start_up"]

# Two queues of tasks, a dead-letter queue and a queue with a plain handler.
QUEUES = """
version: 1
queues:
  emails:
    tasks: {mod}:broker
    concurrency: 4
    attempts: 2
    backoff: {{type: fixed, delay: 100ms}}
    dead_letter: dead
    retention: {{completed: {{count: 10000}}, failed: {{count: 10000}}}}
  reports:
    tasks: {mod}:broker
    concurrency: 1
  dead:
    handler: {mod}:keep
  plain:
    handler: {mod}:keep
"""

HEADER = """
import os
from cortexflow.taskiq import broker_from_config

broker = broker_from_config(os.path.join(os.path.dirname(__file__), "queues.yaml"))

def keep(data):
    return data
"""


@dataclass
class App:
    module: ModuleType
    config: Config
    path: Path
    url: str

    @property
    def broker(self) -> Any:
        return self.module.broker

    @contextlib.asynccontextmanager
    async def workers(self, *queues: str, replicas: int = 1) -> AsyncIterator[list[QueueWorker]]:
        """Workers of ``queues`` (``replicas`` each) in this loop, stopped at the end."""
        started: list[QueueWorker] = []
        try:
            for queue in queues:
                for replica in range(replicas):
                    worker = QueueWorker(self.config, queue, self.url, replica=replica)
                    await worker.start()
                    started.append(worker)
            yield started
        finally:
            for worker in started:
                await worker.stop(2)
            await self.broker.manager.close()


@pytest.fixture
def make_app(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., App]:
    """``make_app(source, queues=QUEUES)``: the project with ``source`` after HEADER in a module
    of its own (``{mod}`` in ``queues`` is its name), imported."""

    def make(source: str, queues: str = QUEUES) -> App:
        mod = f"tqapp_{uuid.uuid4().hex[:10]}"
        text = textwrap.dedent(HEADER) + textwrap.dedent(source)
        path = write_project(tmp_path, queues.format(mod=mod), {f"{mod}.py": text})
        monkeypatch.setenv(ENV_REDIS_URL, redis_url)
        monkeypatch.syspath_prepend(str(tmp_path))
        config = load_config(path)  # imports the module (the checks of `tasks:`)
        return App(importlib.import_module(mod), config, path, redis_url)

    return make
