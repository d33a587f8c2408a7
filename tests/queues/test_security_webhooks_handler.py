"""The notifications handler's webhook type, end to end through its JobContext: internal
addresses refused by default, allowed through the queue's settings, redirects not followed.

(The policy's details are in tests/queues/test_security_webhooks.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cortexflow.errors import UnrecoverableError
from cortexflow.queues import notifications
from tests.helpers.http_servers import HookServer
from tests.helpers.jobs import run_handler

NOTE = {"userId": "u1", "type": "webhook", "title": "T", "message": "M"}


def _run(redis_url: str, data: dict[str, Any], settings: dict[str, Any] | None = None) -> Any:
    return run_handler(
        redis_url, notifications.handle, data,
        queue="notifications", name="send-notification", job_id="n1", settings=settings,
    )  # fmt: skip


def test_a_webhook_to_loopback_is_refused_unless_the_queue_allows_it(
    redis_url: str, hook_server: Callable[..., HookServer]
) -> None:
    inside = hook_server()
    with pytest.raises(UnrecoverableError, match="refused by policy"):
        _run(redis_url, {**NOTE, "url": f"{inside.url}/admin"})
    assert inside.hits == []
    allowed = {"webhook_allow": ["127.0.0.1"]}
    assert _run(redis_url, {**NOTE, "url": f"{inside.url}/hook"}, allowed)["status"] == 204
    assert inside.hits == ["/hook"]


def test_a_webhook_redirect_is_not_followed(
    redis_url: str, hook_server: Callable[..., HookServer]
) -> None:
    inside = hook_server()
    bouncer = hook_server("redirect", f"{inside.url}/admin")
    allowed = {"webhook_allow": ["127.0.0.1"]}
    with pytest.raises(UnrecoverableError, match="redirect"):
        _run(redis_url, {**NOTE, "url": f"{bouncer.url}/hook"}, allowed)
    assert inside.hits == []
