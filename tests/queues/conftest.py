"""The shipped queues' tests: loopback HTTP servers for the outbound webhooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.helpers.http_servers import HookServer


@pytest.fixture
def hook_server() -> Iterator[Callable[..., HookServer]]:
    """``hook_server(mode="ok", location="")`` starts a recording HTTP server on loopback; all
    are closed after the test."""
    made: list[HookServer] = []

    def start(mode: str = "ok", location: str = "") -> HookServer:
        server = HookServer(mode, location)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()
