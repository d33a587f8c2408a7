"""Helpers for engine tests: configs built in code, in-process and real-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from cortexflow.config.model import Config, QueueConfig
from cortexflow.engine import connect
from cortexflow.engine.queue import QueueEngine
from cortexflow.worker.run import QueueWorker

PREFIX = "cortexflow"


def make_config(path: Path, *queues: QueueConfig, stop_timeout: float = 5.0) -> Config:
    return Config(path=path, queues={q.name: q for q in queues}, stop_timeout=stop_timeout)


@contextlib.asynccontextmanager
async def engine_for(url: str, queue: QueueConfig) -> AsyncIterator[QueueEngine]:
    client = connect(url)
    try:
        yield QueueEngine(client, queue, PREFIX)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def inproc_worker(
    config: Config, queue: str, url: str, handler: Callable[..., Any]
) -> AsyncIterator[QueueWorker]:
    worker = QueueWorker(config, queue, url, handler=handler)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(5)


async def until(pred: Callable[[], Awaitable[Any]], timeout: float, what: str = "") -> Any:
    """Poll an async predicate until it is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what or pred}")
        await asyncio.sleep(0.05)


# -- real worker processes --------------------------------------------------------------------

RECORDING_HANDLER = '''
import asyncio, json, os, random, time
import redis.asyncio as aioredis

_client = None

def _r():
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    return _client

async def handle(data, job):
    """Records each run (id, attempt, pid, start time), then sleeps data['sleep'] seconds."""
    r = _r()
    start = time.time()
    await r.rpush("test:runs", json.dumps(
        {"id": job.id, "attempt": job.attempt, "pid": os.getpid(), "t": start}))
    await r.hincrby("test:count", job.id, 1)
    s = data.get("sleep", 0)
    if await r.exists("test:fast"):  # a test flips this to make later runs quick
        s = 0
    if isinstance(s, list):
        s = random.uniform(*s)
    if s:
        await asyncio.sleep(s)
    return {"pid": os.getpid()}
'''


def write_project(tmp_path: Path, queues_yaml: str) -> Path:
    """A folder with queues.yaml and a recording handler module `rec.py` beside it."""
    (tmp_path / "rec.py").write_text(RECORDING_HANDLER)
    path = tmp_path / "queues.yaml"
    path.write_text(textwrap.dedent(queues_yaml))
    return path


class WorkerProcess:
    """`python -m cortexflow worker QUEUE` as a real child process in its own process group."""

    def __init__(self, config_path: Path, queue: str, url: str, log_dir: Path) -> None:
        env = dict(os.environ)
        env["TEST_REDIS_URL"] = url
        env.pop("CORTEXFLOW_PARENT_PID", None)
        self.log_path = log_dir / f"worker-{queue}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cortexflow",
                "worker",
                queue,
                "-f",
                str(config_path),
                "--redis-url",
                url,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 15.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill9()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
