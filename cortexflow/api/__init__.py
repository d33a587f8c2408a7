"""The Python API: QueueManager, WorkerManager, BaseWorker, QueueName (BullMQ-style, snake_case).

Import from ``cortexflow`` directly: ``from cortexflow import get_queue_manager, QueueName``.
"""

from cortexflow.api.base_worker import BaseWorker
from cortexflow.api.manager import QueueManager, get_queue_manager
from cortexflow.api.names import QueueName
from cortexflow.api.sync import SyncQueueManager
from cortexflow.api.workers import WorkerManager

__all__ = [
    "BaseWorker",
    "QueueManager",
    "QueueName",
    "SyncQueueManager",
    "WorkerManager",
    "get_queue_manager",
]
