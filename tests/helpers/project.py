"""Projects on disk: a folder with a queues.yaml and the files beside it (handler modules, payload
schemas), written by one function, ``write_project``; the handler modules the tests use.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# A Redis URL nothing answers, with a password that must never be shown.
SECRET_URL = "redis://user:s3cret@127.0.0.1:1/0"


def write_project(folder: Path, queues_yaml: str, files: Mapping[str, str] | None = None) -> Path:
    """``folder``/queues.yaml (dedented) and ``files`` (name -> text) beside it; returns the
    queues.yaml path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    path = folder / "queues.yaml"
    path.write_text(textwrap.dedent(queues_yaml))
    return path


def write_shipped_project(folder: Path) -> Path:
    """The shipped queues.yaml with 100 ms backoffs (so retries are quick), and its schemas."""
    shipped = yaml.safe_load((REPO / "queues.yaml").read_text())
    shipped["defaults"]["backoff"] = {"type": "fixed", "delay": "100ms"}
    for queue in shipped["queues"].values():
        queue.pop("backoff", None)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "schemas", folder / "schemas", dirs_exist_ok=True)
    return write_project(folder, yaml.safe_dump(shipped, sort_keys=False))


# -- rec.py: a handler that records every run in Redis (the engine's process tests) ------------

RECORDING_HANDLER = '''
import asyncio, json, os, random, time
import redis.asyncio as aioredis

_client = None
_ready = None

async def _r():
    global _client, _ready
    if _client is None:
        url = os.environ["TEST_REDIS_URL"]
        if url.startswith("redis+cluster://"):  # tests/scale/test_cluster_engine.py
            from redis.asyncio.cluster import RedisCluster
            host, _, port = url.split("://")[1].split(",")[0].rpartition(":")
            _client = RedisCluster(host=host, port=int(port))
            # Read the topology once, before the first jobs' calls race to do it.
            _ready = asyncio.ensure_future(_client.initialize())
        else:
            _client = aioredis.Redis.from_url(url)
    if _ready is not None:
        await asyncio.shield(_ready)
    return _client

async def handle(data, job):
    """Records each run (id, attempt, pid, start time), then sleeps data['sleep'] seconds."""
    r = await _r()
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

RECORDER = {"rec.py": RECORDING_HANDLER}


# -- handlers.py, bad.py, crashy.py: the supervisor's tests ------------------------------------

SUPERVISOR_HANDLERS = textwrap.dedent(
    '''
    """Handlers for the supervisor tests."""
    import asyncio
    import os
    import sys
    import time
    from pathlib import Path

    HERE = Path(__file__).parent


    async def sleepy(data):
        if data.get("mark"):  # tell the test this job's handler runs
            (HERE / "running").mkdir(exist_ok=True)
            (HERE / "running" / data["mark"]).touch()
        await asyncio.sleep(data.get("seconds", 0))
        return {"pid": os.getpid()}


    async def long(data):
        """Runs a minute, unless a file named `fast` appears beside this module."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (HERE / "fast").exists():
            await asyncio.sleep(0.05)
        return {"pid": os.getpid()}


    def noisy(data):
        """Writes a huge line to stdout, then closes stdout and goes on on stderr."""
        if data.get("huge"):
            sys.stdout.write("H" * data["huge"] + "\\n")
            sys.stdout.flush()
        if data.get("close_stdout"):
            sys.stdout.flush()
            os.close(1)
        print("still-alive", data.get("n"), file=sys.stderr, flush=True)
        return None
    '''
)

SUPERVISED = {
    "handlers.py": SUPERVISOR_HANDLERS,
    "bad.py": 'raise RuntimeError("bad handler module: boom at import")\n',
    "crashy.py": "import os\nos._exit(3)\n",
}


# -- three small queues for the CLI's operations commands and the Python API --------------------

OPS_QUEUES_YAML = """\
version: 1
queues:
  notifications:
    handler: ops_test_handlers:notify
    concurrency: 4
    attempts: 1
    payload_schema: notif.schema.json
  analytics:
    handler: ops_test_handlers:track
    attempts: 1
  echo:
    handler: ops_test_handlers:Echo
"""

NOTIF_SCHEMA = {
    "type": "object",
    "required": ["userId", "type"],
    "properties": {"userId": {"type": "string"}, "type": {"enum": ["email", "sms", "push"]}},
}

OPS_HANDLERS = """\
import asyncio

from cortexflow import BaseWorker, UnrecoverableError


async def notify(data, job):
    await job.log(f"notifying {data['userId']}")
    if data.get("fail"):
        raise UnrecoverableError("told to fail")
    await asyncio.sleep(data.get("sleep", 0))
    return {"sent": data["userId"]}


def track(data):
    return {"tracked": data.get("event")}


class Echo(BaseWorker):
    async def process(self, job):
        await job.update_progress(100)
        return {"echo": job.data, "attempt": job.attempt, "queue": job.queue}
"""


def write_ops_project(root: Path) -> Path:
    """queues.yaml with three small queues and their handlers in ``root``; returns its path."""
    return write_project(
        root,
        OPS_QUEUES_YAML,
        {"notif.schema.json": json.dumps(NOTIF_SCHEMA), "ops_test_handlers.py": OPS_HANDLERS},
    )
