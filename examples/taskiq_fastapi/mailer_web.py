"""The web app: it sends tasks and reads their results."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from mailer_tasks import broker, report, welcome
from taskiq import AsyncTaskiqTask


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    app.state.greeting = "Welcome"
    if not broker.is_worker_process:  # in the web process: the producer's side
        await broker.startup()
    yield {"sender": "the mailer"}
    if not broker.is_worker_process:
        await broker.shutdown()


app = FastAPI(lifespan=lifespan)


@app.post("/welcome/{name}", status_code=202)
async def send_welcome(name: str) -> dict[str, str]:
    task = await welcome.kiq(name)
    return {"task_id": task.task_id}


@app.post("/reports", status_code=202)
async def send_report(numbers: list[int]) -> dict[str, str]:
    task = await report.kiq(numbers)
    return {"task_id": task.task_id}


@app.get("/tasks/{task_id}")
async def result(task_id: str, response: Response) -> dict[str, Any]:
    task: AsyncTaskiqTask[Any] = AsyncTaskiqTask(task_id, broker.result_backend)
    if not await task.is_ready():
        response.status_code = 202
        return {"ready": False}
    outcome = await task.get_result()
    return {"ready": True, "value": outcome.return_value, "error": str(outcome.error or "")}
