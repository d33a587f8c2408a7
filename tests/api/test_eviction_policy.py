"""A server whose maxmemory-policy deletes keys when it is full (allkeys-lru, volatile-ttl, ...)
loses jobs without an error: `up`, `worker`, `dashboard` and the Python API's first connection
refuse it (exit 78, EvictionPolicyError) unless queues.yaml says `redis.allow_eviction: true`.
A managed server that refuses CONFIG GET is read through INFO; one that refuses both is used,
with one warning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cortexflow import EvictionPolicyError, QueueManager
from cortexflow.embedded import ServerProcess
from cortexflow.engine import memory
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project

QUEUES = """
{redis}
queues:
  work:
    handler: json:dumps
"""


@pytest.fixture
def lru_server(
    tmp_path: Path, private_server: Callable[..., ServerProcess]
) -> Iterator[ServerProcess]:
    server = private_server(
        tmp_path / "data", appendonly=False, extra={"maxmemory-policy": "allkeys-lru"}
    )
    server.start()
    yield server
    server.stop()


def app_config(tmp_path: Path, allow: bool = False) -> Path:
    redis = "redis:\n  allow_eviction: true" if allow else ""
    return write_project(tmp_path / "app", QUEUES.format(redis=redis))


@pytest.mark.parametrize(
    "command", [["worker", "work"], ["up"], ["dashboard", "--port", "0"]], ids=lambda c: c[0]
)
def test_start_refuses_a_server_that_evicts(
    tmp_path: Path, lru_server: ServerProcess, command: list[str]
) -> None:
    cfg = app_config(tmp_path)
    r = run_cli(*command, "-f", str(cfg), "--redis-url", lru_server.url, timeout=60)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert "maxmemory-policy allkeys-lru" in r.stderr
    assert "allow_eviction: true" in r.stderr and "noeviction" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_api_refuses_it_at_its_first_connection_unless_allowed(
    tmp_path: Path, lru_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def connect(cfg: Path) -> None:
        async with QueueManager(cfg, lru_server.url) as m:
            await m.add_job("work", "work", {})

    with pytest.raises(EvictionPolicyError) as caught:
        asyncio.run(connect(app_config(tmp_path)))
    assert caught.value.policy == "allkeys-lru"
    with caplog.at_level(logging.WARNING, logger="cortexflow"):
        asyncio.run(connect(app_config(tmp_path, allow=True)))
    assert "allkeys-lru (allowed by redis.allow_eviction)" in caplog.text


def test_without_config_get_the_policy_is_read_from_info_and_without_both_it_warns_once(
    tmp_path: Path,
    lru_server: ServerProcess,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    admin = redis.Redis.from_url(lru_server.url)
    admin.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config")
    admin.execute_command(
        "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-config", "-info"
    )
    sock = lru_server.unix_socket
    assert sock is not None
    cfg = app_config(tmp_path)

    async def connect(user: str) -> None:
        async with QueueManager(cfg, f"unix://{user}:pw@{sock}") as m:
            await m.add_job("work", "work", {})

    # CONFIG GET refused: INFO memory still says allkeys-lru.
    with pytest.raises(EvictionPolicyError):
        asyncio.run(connect("noconfig"))
    # Neither answers: the server is used, with one warning per process.
    monkeypatch.setattr(memory, "_warned_unreadable", False)
    with caplog.at_level(logging.WARNING, logger="cortexflow"):
        asyncio.run(connect("noinfo"))
        asyncio.run(connect("noinfo"))
    assert caplog.text.count("cannot read the maxmemory-policy") == 1
