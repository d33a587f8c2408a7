"""A Redis user limited by ACL to cortexflow's keys runs everything; one without access gets a
clear error, not a traceback (security: least privilege works)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import redis

from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project

QUEUES_YAML = "queues:\n  acl:\n    handler: tasks:handle\n"
TASKS = {"tasks.py": "async def handle(data):\n    return data\n"}


def _user(server: ServerProcess, *rules: str) -> tuple[str, str]:
    name, password = f"cf-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = redis.Redis(host=server.host, port=server.port)
    admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "resetkeys", *rules)
    admin.close()
    return name, password


def test_a_user_limited_to_cortexflow_keys_can_enqueue_and_work(
    valkey_server: ServerProcess, tcp_url: str, tmp_path: Path
) -> None:
    db = tcp_url.rsplit("/", 1)[1]
    name, password = _user(
        valkey_server, "~{cortexflow:*", "~{cortexflow}:*", "+@all", "-@dangerous"
    )
    url = f"redis://{name}:{password}@{valkey_server.host}:{valkey_server.port}/{db}"

    async def handler(data: Any) -> int:
        return int(data["n"]) * 2

    async def main() -> None:
        queue = QueueConfig(name="acl", handler="x:y")
        async with engine_for(url, queue) as e:
            async with inproc_worker(make_config(tmp_path / "q.yaml", queue), "acl", url, handler):
                await e.add("n", {"n": 21}, JobOptions(job_id="a1"))
                job = await e.wait_finished("a1", 10)
            assert job is not None and job.result == 42
            assert (await e.stats())["completed"] == 1

    asyncio.run(main())
    path = write_project(tmp_path, QUEUES_YAML, TASKS)
    shown = run_cli("stats", "--json", "-f", str(path), "--redis-url", url)
    assert shown.returncode == 0, shown.stderr
    assert password not in shown.stdout + shown.stderr


def test_a_user_without_access_gets_a_clear_error(
    valkey_server: ServerProcess, tcp_url: str, tmp_path: Path
) -> None:
    db = tcp_url.rsplit("/", 1)[1]
    name, password = _user(valkey_server, "~other:*", "+@all", "-@dangerous")
    url = f"redis://{name}:{password}@{valkey_server.host}:{valkey_server.port}/{db}"
    path = write_project(tmp_path, QUEUES_YAML, TASKS)
    result = run_cli(
        "enqueue", "acl", "-", "-f", str(path), "--redis-url", url,
        input='{"x": 1}',
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "No permissions" in result.stderr and "~{cortexflow:*" in result.stderr
    assert "Traceback" not in result.stderr and password not in result.stderr
