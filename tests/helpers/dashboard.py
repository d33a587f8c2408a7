"""What the dashboard tests share: a small project, the dashboard app served by a real uvicorn
on a free port (in a thread), and workers on their own event loop in a thread."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers.jobs import workers_in_thread
from tests.helpers.poll import wait_for

# The browser tests' Chromium: Debian's package, driven by Playwright with executable_path.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

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
    """tests.helpers.poll.wait_for with this module's default timeout and a ``what`` message."""
    return wait_for(predicate, timeout, message=what or None)


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


def workers(config: Path, redis_url: str, queues: list[str] | None = None) -> Any:
    """WorkerManager on its own event loop in a thread (tests.helpers.jobs.workers_in_thread)."""
    return workers_in_thread(config, redis_url, queues)


def wait_healthy(proc: Any, base: str, timeout: float = 60) -> None:
    """Wait until the dashboard process ``proc`` (a tests.helpers.procs.Proc) answers /healthz
    at ``base``; fail with its log if it exits first."""
    import httpx

    def healthy() -> bool:
        assert proc.alive(), proc.log()
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, timeout=timeout, what="dashboard answering /healthz")


def start_dashboard(
    config: Path, redis_url: str, *args: str, admin: str = ADMIN_TOKEN
) -> tuple[Any, str]:
    """A real ``cortexflow dashboard`` process (admin and read tokens from the environment) on
    a free port, answering /healthz: (its Proc, its base URL). The caller kills it."""
    from tests.helpers.procs import Proc, cortexflow_argv

    # --port 0: the dashboard binds a free port itself and prints it in its URL (a port picked
    # here could be taken by another test's process before the dashboard binds it).
    argv = ["dashboard", "-f", str(config), "--redis-url", redis_url, "--port", "0"]
    proc = Proc(
        cortexflow_argv(*argv, *args),
        cwd=config.parent,
        env={"CORTEXFLOW_TOKEN": admin, "CORTEXFLOW_READ_TOKEN": READ_TOKEN},
        name="dashboard",
    )
    try:
        (url,) = proc.wait_for(r"http://127\.0\.0\.1:(\d+)/", 60)
        base = f"http://127.0.0.1:{url.group(1)}"
        wait_healthy(proc, base)
    except BaseException:
        proc.kill()
        raise
    return proc, base


@contextlib.contextmanager
def dashboard_process(config: Path, redis_url: str, *args: str) -> Iterator[str]:
    """start_dashboard as a context: yields the base URL, checks the log held no traceback,
    kills the process at the end."""
    proc, base = start_dashboard(config, redis_url, *args)
    try:
        yield base
        assert "Traceback" not in proc.log(), proc.log()
    finally:
        proc.kill()
