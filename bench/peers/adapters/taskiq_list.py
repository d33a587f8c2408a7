"""taskiq-redis ListQueueBroker (LPUSH / BRPOP, no acknowledgement): ``kiq()`` one at a time, then
gathered; ``taskiq worker --workers 1 --max-async-tasks 10``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.adapters import GATHER, _taskiq, dist_version, not_installed, python_produce_argv

NAME = "taskiq_list"
BROKER = "list_broker"
JOB_KEYS = None  # every message is an entry of one list


def label() -> str:
    return f"taskiq-redis {dist_version('taskiq-redis')} ListQueueBroker (gather x{GATHER})"


def missing() -> str | None:
    return not_installed("taskiq_redis")


def produce_argv(url: str, serial: int, total: int) -> list[str]:
    return python_produce_argv(NAME, url, serial, total)


def worker_argv(url: str, workdir: Path) -> list[str]:
    return _taskiq.worker_argv(BROKER)


async def produce(url: str, serial: int, total: int) -> dict[str, Any]:
    return await _taskiq.produce(BROKER, serial, total)
