"""The data format key: a release records the format it writes, refuses (with what to do) data it
cannot work on, and migrates older data once, however many processes start at once."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import redis

from cortexflow.api.manager import QueueManager
from cortexflow.embedded import ServerProcess
from cortexflow.engine import connect, registry
from cortexflow.engine.connection import Client
from cortexflow.engine.dataformat import (
    CURRENT,
    FORMAT,
    Code,
    Migration,
    ensure_format,
    read_format,
)
from cortexflow.errors import DataFormatError
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project

PREFIX = "cortexflow"
KEY = "{cortexflow}:format"
LOCK = "{cortexflow}:format:lock"
QUEUES_YAML = "queues:\n  fmt:\n    handler: tasks:handle\n"
TASKS = {"tasks.py": "async def handle(data):\n    return data\n"}
NEWER = {"version": 99, "oldest_reader": 99, "written_by": "cortexflow 9.0.0"}


def _stored(client: redis.Redis) -> dict[str, object]:
    raw = client.get(KEY)
    assert raw is not None, "no format key"
    return dict(json.loads(raw))


def test_the_first_connection_records_the_format_it_writes(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    project = write_project(tmp_path, QUEUES_YAML, TASKS)
    r = run_cli("enqueue", "fmt", "-", "-f", str(project), "--redis-url", redis_url, input="{}")
    assert r.returncode == 0, r.stderr
    stored = _stored(redis_client)
    assert stored == {
        "version": FORMAT,
        "oldest_reader": CURRENT.oldest_reader,
        "written_by": CURRENT.name,
    }
    # A format written by a newer release that this one can work on is left as it is.
    compatible = {"version": FORMAT + 1, "oldest_reader": FORMAT, "written_by": "cortexflow 9"}
    redis_client.set(KEY, json.dumps(compatible))
    r = run_cli("enqueue", "fmt", "-", "-f", str(project), "--redis-url", redis_url, input="{}")
    assert r.returncode == 0, r.stderr
    assert _stored(redis_client) == compatible


def test_a_newer_format_is_refused_by_the_cli_the_worker_and_up(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    project = write_project(tmp_path, QUEUES_YAML, TASKS)
    redis_client.set(KEY, json.dumps(NEWER))
    before = sorted(redis_client.keys("*"))
    runs = {
        "stats": (("stats", "-f", str(project), "--redis-url", redis_url), 65),
        "enqueue": (("enqueue", "fmt", "-", "-f", str(project), "--redis-url", redis_url), 65),
        # the worker exits as for a config error: `up` does not restart it in a loop
        "worker": (("worker", "fmt", "-f", str(project), "--redis-url", redis_url), 78),
        "up": (("up", "-f", str(project), "--redis-url", redis_url), 65),
    }
    for what, (argv, code) in runs.items():
        r = run_cli(*argv, input="{}", timeout=30)
        assert r.returncode == code, f"{what}: exit {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr, r.stderr
        assert "the data under prefix 'cortexflow' is in format 99" in r.stderr, r.stderr
        assert "written by cortexflow 9.0.0" in r.stderr
        assert f"reads formats up to {FORMAT}" in r.stderr
        assert "Upgrade cortexflow" in r.stderr
    assert sorted(redis_client.keys("*")) == before  # nothing written: no job, no worker entry
    assert _stored(redis_client) == NEWER


def test_the_python_api_refuses_a_newer_format_at_its_first_connection(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    project = write_project(tmp_path, QUEUES_YAML, TASKS)
    redis_client.set(KEY, json.dumps(NEWER))

    async def main() -> None:
        manager = QueueManager(project, redis_url)
        try:
            with pytest.raises(DataFormatError, match="is in format 99"):
                await manager.add_job("fmt", "x", {})
        finally:
            await manager.close()

    asyncio.run(main())
    assert redis_client.zcard("{cortexflow:fmt}:wait") == 0


def test_a_key_something_else_wrote_is_refused_not_overwritten(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(KEY, "v2")

    async def main() -> None:
        client = connect(redis_url)
        try:
            with pytest.raises(DataFormatError, match="not the data format cortexflow writes"):
                await ensure_format(client, PREFIX)
        finally:
            await client.aclose()

    asyncio.run(main())
    assert redis_client.get(KEY) == b"v2"


# -- migrations: a test release of format 2 -----------------------------------------------------


def _release(oldest_reader: int = 1, fail_first: bool = False) -> Code:
    """A release of format 2 whose migration stamps every configured queue's meta hash, counts
    its runs in ``test:migrated`` and takes a while (so concurrent starts overlap it)."""
    failed: list[bool] = []

    async def stamp(client: Client, prefix: str, queues: Sequence[str]) -> None:
        await client.incr("test:migrated")
        for queue in queues:
            await client.hset(f"{{{prefix}:{queue}}}:meta", "layout", "2")
            if fail_first and not failed:
                failed.append(True)
                raise RuntimeError("crashed half-way")
            await asyncio.sleep(0.3)

    step = Migration(to=2, oldest_reader=oldest_reader, what="stamp the meta hash", run=stamp)
    return Code(format=2, oldest_reader=oldest_reader, migrations={2: step}, name="cortexflow 2")


def test_a_migration_runs_once_however_many_processes_start_at_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    release = _release()

    async def start() -> int:
        client = connect(redis_url)
        try:
            return (await ensure_format(client, PREFIX, ["a", "b"], code=release)).version
        finally:
            await client.aclose()

    async def main() -> list[int]:
        return list(await asyncio.gather(*(start() for _ in range(8))))

    assert asyncio.run(main()) == [1] * 8  # each found format 1 (no key: 0.1.0's data)
    assert redis_client.get("test:migrated") == b"1"
    assert redis_client.hget("{cortexflow:a}:meta", "layout") == b"2"
    assert redis_client.hget("{cortexflow:b}:meta", "layout") == b"2"
    assert _stored(redis_client) == {"version": 2, "oldest_reader": 1, "written_by": "cortexflow 2"}
    assert not redis_client.exists(LOCK)
    # Started again: nothing to migrate. And this release (format 1) may run beside it, since
    # the migrated data says format-1 code can still work on it.
    assert asyncio.run(main()) == [2] * 8
    assert redis_client.get("test:migrated") == b"1"

    async def current() -> None:
        client = connect(redis_url)
        try:
            assert (await ensure_format(client, PREFIX)).version == 2
        finally:
            await client.aclose()

    asyncio.run(current())


def test_a_migration_that_crashed_half_way_runs_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    release = _release(fail_first=True)

    async def main() -> None:
        client = connect(redis_url)
        try:
            with pytest.raises(RuntimeError, match="crashed half-way"):
                await ensure_format(client, PREFIX, ["a", "b"], code=release)
            assert (await read_format(client, PREFIX)).version == 1  # not marked as migrated
            assert not await client.exists(LOCK)
            await ensure_format(client, PREFIX, ["a", "b"], code=release)
        finally:
            await client.aclose()

    asyncio.run(main())
    assert redis_client.get("test:migrated") == b"2"
    assert redis_client.hget("{cortexflow:b}:meta", "layout") == b"2"
    assert _stored(redis_client)["version"] == 2


def test_a_migration_older_workers_cannot_follow_waits_until_they_stop(
    redis_url: str, redis_client: redis.Redis
) -> None:
    release = _release(oldest_reader=2)

    async def main() -> None:
        client = connect(redis_url)
        try:
            # A worker of a release before the key reports no format (format 1).
            await registry.publish_worker(client, PREFIX, "a", "host:1:old", {"pid": 1}, 30)
            with pytest.raises(DataFormatError) as refused:
                await ensure_format(client, PREFIX, ["a"], code=release)
            message = str(refused.value)
            assert "must migrate it to format 2" in message
            assert "a: host:1:old" in message
            assert "Stop them first" in message
            assert await client.get("test:migrated") is None
            assert not await client.exists(KEY)
            await registry.remove_worker(client, PREFIX, "a", "host:1:old")
            await registry.publish_worker(client, PREFIX, "a", "host:2:new", {"format": 2}, 30)
            await ensure_format(client, PREFIX, ["a"], code=release)
            # Now format-1 code is refused: the data says it needs format 2.
            with pytest.raises(DataFormatError, match="needs cortexflow of data format 2"):
                await ensure_format(client, PREFIX, ["a"])
        finally:
            await client.aclose()

    asyncio.run(main())
    assert _stored(redis_client)["oldest_reader"] == 2


def test_a_release_without_the_migration_path_refuses(
    redis_url: str, redis_client: redis.Redis
) -> None:
    step = _release().migrations[2]
    jump = Code(format=3, oldest_reader=1, migrations={3: step}, name="cortexflow 3")

    async def main() -> None:
        client = connect(redis_url)
        try:
            with pytest.raises(DataFormatError, match="cannot migrate data to format 2"):
                await ensure_format(client, PREFIX, code=jump)
        finally:
            await client.aclose()

    asyncio.run(main())
    assert not redis_client.exists(KEY)


def test_on_the_embedded_default_a_newer_format_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No URL anywhere: the folder's embedded server (started here by the Python API, joined by
    the commands run in the folder) gets the format key, and refuses a newer one."""
    for name in list(os.environ):
        if name.startswith("CORTEXFLOW_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    project = write_project(tmp_path, QUEUES_YAML, TASKS)

    async def main() -> None:
        async with QueueManager(project) as manager:
            assert manager.url.startswith("unix://"), manager.url
            client = await manager.redis_client()
            stored = json.loads(await client.get(KEY) or b"")
            assert stored["version"] == FORMAT
            await client.set(KEY, json.dumps(NEWER))
            for argv, code in ((("stats",), 65), (("worker", "fmt"), 78)):
                r = await asyncio.to_thread(run_cli, *argv, cwd=tmp_path, timeout=30)
                assert r.returncode == code, f"{argv}: {r.returncode}\n{r.stderr}"
                assert "the data under prefix 'cortexflow' is in format 99" in r.stderr

    asyncio.run(main())


def test_a_full_server_still_answers_reads_without_the_format_recorded(
    tmp_path: Path, private_server: Callable[..., ServerProcess]
) -> None:
    """The format of a server without the key is only noted, never required: a server that
    refuses every write (maxmemory reached under noeviction) still serves `stats`."""
    server = private_server(tmp_path / "full", appendonly=False)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory", "1")  # below what it uses: every write is refused
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            client.set("probe", "x")
        project = write_project(tmp_path / "app", QUEUES_YAML, TASKS)
        r = run_cli("stats", "--json", "-f", str(project), "--redis-url", server.url)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["waiting"] == 0
        assert client.get(KEY) is None
        client.close()
    finally:
        server.kill()
