"""cortexflow: a declarative job-queue runner on taskiq and Redis/Valkey.

The public API is imported lazily: ``import cortexflow`` stays cheap (no redis, no taskiq)
until one of these names is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cortexflow.errors import (
    CortexflowError,
    EvictionPolicyError,
    LeaseLostError,
    RedisUnavailableError,
    ServerFullError,
    UnrecoverableError,
)

__version__ = "0.2.0"

if TYPE_CHECKING:
    from cortexflow.api.base_worker import BaseWorker
    from cortexflow.api.events import QueueEvents
    from cortexflow.api.manager import QueueManager, get_queue_manager
    from cortexflow.api.names import QueueName
    from cortexflow.api.sync import SyncQueueManager
    from cortexflow.api.workers import WorkerManager

_LAZY = {
    "BaseWorker": "cortexflow.api.base_worker",
    "QueueEvents": "cortexflow.api.events",
    "QueueManager": "cortexflow.api.manager",
    "QueueName": "cortexflow.api.names",
    "SyncQueueManager": "cortexflow.api.sync",
    "WorkerManager": "cortexflow.api.workers",
    "get_queue_manager": "cortexflow.api.manager",
}

__all__ = [
    "BaseWorker",
    "CortexflowError",
    "EvictionPolicyError",
    "LeaseLostError",
    "QueueEvents",
    "QueueManager",
    "QueueName",
    "RedisUnavailableError",
    "ServerFullError",
    "SyncQueueManager",
    "UnrecoverableError",
    "WorkerManager",
    "__version__",
    "get_queue_manager",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cortexflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
