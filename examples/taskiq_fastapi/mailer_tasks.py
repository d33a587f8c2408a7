"""The app's taskiq tasks: one broker for both queues; each task names its queue."""

from pathlib import Path

import taskiq_fastapi
from fastapi import Request
from taskiq import TaskiqDepends

from cortexflow.taskiq import broker_from_config

broker = broker_from_config(Path(__file__).with_name("queues.yaml"))
# In the workers, the app's lifespan runs and `Request` resolves inside tasks.
taskiq_fastapi.init(broker, "mailer_web:app")


@broker.task(queue="emails")
async def welcome(name: str, request: Request = TaskiqDepends()) -> str:
    # app.state is set by the lifespan; request.state holds what the lifespan yielded.
    return f"{request.app.state.greeting}, {name}! (from {request.state.sender})"


@broker.task(queue="reports", timeout=60)
async def report(numbers: list[int]) -> dict[str, int]:
    return {"count": len(numbers), "sum": sum(numbers)}
