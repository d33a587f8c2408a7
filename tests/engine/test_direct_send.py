"""cortexflow's clients send a command without a task of its own (connection.py
``_send_direct``), and fall back to redis-py's bounded send when the kernel does not take the
whole write. A real server; payloads large enough to fill the socket buffers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from cortexflow.engine.connection import connect


def _count_tasks(url: str, calls: Any) -> int:
    created = 0

    async def main() -> None:
        nonlocal created
        client = connect(url)
        try:
            await client.ping()  # connected, health check done

            def count(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
                nonlocal created
                created += 1
                return asyncio.Task(coro, loop=loop, **kw)

            asyncio.get_running_loop().set_task_factory(count)
            await calls(client)
            asyncio.get_running_loop().set_task_factory(None)
        finally:
            await client.aclose()

    asyncio.run(main())
    return created


def test_a_command_makes_no_task(redis_url: str) -> None:
    """redis-py's own send wraps each command in asyncio.wait_for: a task per command on
    Python 3.11 (100 here for 100 commands). cortexflow's clients make none."""

    async def calls(client: aioredis.Redis) -> None:
        for i in range(100):
            await client.set(f"k{i}", i)

    assert _count_tasks(redis_url, calls) == 0


@pytest.mark.slow
def test_a_write_the_kernel_does_not_take_at_once_still_arrives_whole(redis_url: str) -> None:
    """32 MiB values overflow the socket buffers: the rest of the write goes through
    redis-py's path (drain, bounded by the socket timeout), and every byte arrives."""
    big = bytes(range(256)) * (32 * 4096)

    async def main() -> list[bytes | None]:
        client = connect(redis_url)
        try:
            await asyncio.gather(*(client.set(f"big{i}", big) for i in range(3)))
            return [await client.get(f"big{i}") for i in range(3)]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [big, big, big]
