"""What the dashboard tests share: a small project, the dashboard app served by a real uvicorn
on a free port (in a thread), and workers on their own event loop in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

QUEUES_YAML = """\
version: 1
queues:
  work:
    handler: dash_handlers:work
    concurrency: 4
    attempts: 1
    dead_letter: dead
  mail:
    handler: dash_handlers:work
    payload_schema: mail.schema.json
  dead:
    handler: dash_handlers:work
"""

MAIL_SCHEMA = {
    "type": "object",
    "required": ["to", "subject"],
    "properties": {"to": {"type": "string"}, "subject": {"type": "string", "maxLength": 20}},
}

HANDLERS = """\
import asyncio


def explode(data):
    raise ValueError("boom: " + str(data["fail"]))


async def work(data, job):
    await job.log("started " + job.id)
    if data.get("progress"):
        await job.update_progress(data["progress"])
    if data.get("sleep"):
        await asyncio.sleep(data["sleep"])
    if data.get("fail"):
        explode(data)
    return {"ok": True}
"""

ADMIN_TOKEN = "admin-token-for-tests"
READ_TOKEN = "read-token-for-tests"


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "queues.yaml").write_text(QUEUES_YAML)
    (root / "mail.schema.json").write_text(json.dumps(MAIL_SCHEMA))
    (root / "dash_handlers.py").write_text(HANDLERS)
    return root / "queues.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        time.sleep(0.05)


@contextlib.contextmanager
def serve_dashboard(
    config: Path, redis_url: str, *, read_token: bool = True, metrics_public: bool = False
) -> Iterator[str]:
    """The app on a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    from cortexflow.api.manager import QueueManager
    from cortexflow.dashboard.app import Settings, create_app
    from cortexflow.dashboard.auth import Auth, Tokens

    tokens = Tokens(ADMIN_TOKEN, READ_TOKEN if read_token else None)
    app = create_app(QueueManager(config, redis_url), Auth(tokens), Settings(metrics_public))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn started")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextlib.contextmanager
def workers(config: Path, redis_url: str, queues: list[str] | None = None) -> Iterator[None]:
    """WorkerManager on its own event loop in a thread (stopped on exit)."""
    from cortexflow import WorkerManager

    loop = asyncio.new_event_loop()
    manager = WorkerManager(config, redis_url, queues)
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(manager.start_all())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(manager.stop_all(2.0))
        rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in rest:
            t.cancel()
        if rest:
            loop.run_until_complete(asyncio.wait(rest, timeout=2))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), "workers did not start"
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
