"""redis.durable_adds: an add returns once the server has written it to its append-only file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cortexflow.config.loader import load_config
from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess
from cortexflow.engine import connect
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import CortexflowError


def test_durable_adds_wait_for_the_append_only_file(tmp_path: Path, redis_url: str) -> None:
    server = ServerProcess(tmp_path / "aof", appendonly=True)
    (tmp_path / "aof").mkdir()
    server.start()
    q = QueueConfig(name="d", handler="x:y")

    async def main() -> None:
        client = connect(server.url)
        try:
            engine = QueueEngine(client, q, "cortexflow", durable_adds=True)
            assert await engine.add("n", {"v": 1}, JobOptions(job_id="a")) == "a"
            assert len(await engine.add_bulk([("n", {"v": i}, None) for i in range(50)])) == 50
            assert (await engine.stats())["waiting"] == 51
            info = await client.info("persistence")
            assert info["aof_enabled"] == 1
        finally:
            await client.aclose()
        # The session's server has no append-only file: the add is made, and the caller told.
        other = connect(redis_url)
        try:
            engine = QueueEngine(other, q, "cortexflow", durable_adds=True)
            with pytest.raises(CortexflowError, match="appendonly"):
                await engine.add("n", {}, JobOptions(job_id="b"))
            assert await engine.get_job("b") is not None
        finally:
            await other.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_durable_adds_is_a_redis_setting(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text("version: 1\nredis: {durable_adds: true}\nqueues:\n  a: {handler: 'x:y'}\n")
    assert load_config(path, check_imports=False).redis.durable_adds is True
    path.write_text("version: 1\nqueues:\n  a: {handler: 'x:y'}\n")
    assert load_config(path, check_imports=False).redis.durable_adds is False
