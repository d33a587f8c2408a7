"""What the two taskiq-redis adapters share: the app (``apps/taskiq_app.py``) holds both brokers;
``broker`` names which one (``stream_broker`` or ``list_broker``)."""

from __future__ import annotations

import sys
from typing import Any

from bench.peers.adapters import serial_then_gather


def worker_argv(broker: str) -> list[str]:
    """``taskiq worker --workers 1 --max-async-tasks 10`` (ack when saved, the default)."""
    app = f"bench.peers.apps.taskiq_app:{broker}"
    argv = [sys.executable, "-m", "taskiq", "worker", app, "--workers", "1"]
    return [*argv, "--max-async-tasks", "10", "--log-level", "WARNING"]


async def produce(broker_name: str, serial: int, total: int) -> dict[str, Any]:
    """``kiq()`` awaited one at a time, then gathered."""
    from bench.peers.apps import taskiq_app

    broker = getattr(taskiq_app, broker_name)
    task = taskiq_app.stream_noop if broker_name == "stream_broker" else taskiq_app.list_noop
    await broker.startup()  # the stream's consumer group exists before the first kick
    try:
        return await serial_then_gather(task.kiq, serial, total)
    finally:
        await broker.shutdown()
