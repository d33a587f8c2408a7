"""The notifications handler's webhook type, end to end through its JobContext: internal
addresses refused by default, allowed through the queue's settings, redirects not followed.

(The policy's details are in test_security_webhooks.py.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cortexflow.engine import connect
from cortexflow.engine.jobs import JobOptions
from cortexflow.errors import UnrecoverableError
from cortexflow.queues import notifications
from cortexflow.worker.context import JobContext
from tests.security_http import _server, servers

__all__ = ["servers"]

NOTE = {"userId": "u1", "type": "webhook", "title": "T", "message": "M"}


def _run(redis_url: str, data: dict[str, Any], settings: dict[str, Any] | None = None) -> Any:
    async def go() -> Any:
        client = connect(redis_url)

        async def enqueue(queue: str, name: str, payload: Any, opts: JobOptions) -> str:
            raise AssertionError("no follow-up jobs expected")

        ctx = JobContext(
            client,
            "{test}:j:n1",
            id="n1",
            name="send-notification",
            queue="notifications",
            attempt=1,
            priority=0,
            created_at=time.time(),
            data=data,
            enqueue=enqueue,
            settings=settings,
        )
        try:
            return await notifications.handle(data, ctx)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_webhook_to_loopback_is_refused_unless_the_queue_allows_it(
    redis_url: str, servers: list[Any]
) -> None:
    inside = _server(servers)
    with pytest.raises(UnrecoverableError, match="refused by policy"):
        _run(redis_url, {**NOTE, "url": f"{inside.url}/admin"})
    assert inside.hits == []
    allowed = {"webhook_allow": ["127.0.0.1"]}
    assert _run(redis_url, {**NOTE, "url": f"{inside.url}/hook"}, allowed)["status"] == 204
    assert inside.hits == ["/hook"]


def test_a_webhook_redirect_is_not_followed(redis_url: str, servers: list[Any]) -> None:
    inside = _server(servers)
    bouncer = _server(servers, "redirect", f"{inside.url}/admin")
    allowed = {"webhook_allow": ["127.0.0.1"]}
    with pytest.raises(UnrecoverableError, match="redirect"):
        _run(redis_url, {**NOTE, "url": f"{bouncer.url}/hook"}, allowed)
    assert inside.hits == []
