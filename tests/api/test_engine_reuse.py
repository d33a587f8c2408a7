"""A QueueManager keeps one engine per queue and connection: building one registered every
script (a SHA1 of each source) and compiled the payload validator on every add_job."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from cortexflow import get_queue_manager
from cortexflow.engine.scripts import NAMES, Scripts, source


def test_the_manager_reuses_a_queue_engine_until_it_reconnects(
    project: Path, redis_url: str
) -> None:
    async def main() -> None:
        async with get_queue_manager(project, redis_url) as qm:
            first = qm.get_queue("notifications")
            assert qm.get_queue("notifications") is first
            assert qm.get_queue("analytics") is not first
            jid = await qm.add_job("notifications", "n", {"userId": "u", "type": "sms"})
            assert await first.get_job(jid) is not None
            await qm.close()
            await qm.connect()
            again = qm.get_queue("notifications")
            assert again is not first and again.client is not first.client
            assert await again.get_job(jid) is not None

    asyncio.run(main())


def test_scripts_are_made_on_first_use_with_the_servers_sha(redis_url: str) -> None:
    from cortexflow.engine import connect

    async def main() -> None:
        client = connect(redis_url)
        try:
            scripts = Scripts(client)
            assert "fetch" not in vars(scripts)
            fetch = scripts.fetch
            assert scripts.fetch is fetch and "fetch" in vars(scripts)
            for name in NAMES:
                sha = getattr(scripts, name).sha
                assert sha == hashlib.sha1(source(name).encode()).hexdigest()
                assert sha == await client.script_load(source(name))
        finally:
            await client.aclose()

    asyncio.run(main())
