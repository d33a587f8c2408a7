"""Outbound webhooks cannot be aimed at the inside, followed elsewhere, or used to scan ports.

Real HTTP servers on loopback (the "inside"), real lookups and connections.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from cortexflow.embedded import free_port
from cortexflow.errors import UnrecoverableError
from cortexflow.queues import outbound
from cortexflow.queues.outbound import Allowlist, DeliveryError, PolicyError
from tests.helpers.http_servers import HookServer

LOCAL = Allowlist.from_settings({"webhook_allow": ["127.0.0.1"]})


def post(url: str, allow: Allowlist | None = None, timeout: float = 10.0) -> int:
    return asyncio.run(outbound.post_json(url, {"a": 1}, timeout=timeout, allow=allow))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "169.254.169.254",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "[fd00:ec2::254]",
        "[fe80::1]",
        "2130706433",  # 127.0.0.1 as one number
    ],
)
def test_internal_addresses_are_refused_by_default(host: str) -> None:
    with pytest.raises(PolicyError, match="refused by policy"):
        post(f"http://{host}:{free_port()}/hook")


def test_a_refusal_never_probes_open_and_closed_ports_look_the_same(
    hook_server: Callable[..., HookServer],
) -> None:
    open_server = hook_server()
    messages = []
    for url in (f"{open_server.url}/x", f"http://127.0.0.1:{free_port()}/x"):
        with pytest.raises(PolicyError) as refused:
            post(url)
        messages.append(str(refused.value))
    assert open_server.hits == []  # nothing was sent
    assert messages[0] == messages[1]


def test_when_allowed_failures_do_not_tell_closed_from_silent() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    try:
        texts = []
        for url in (
            f"http://127.0.0.1:{free_port()}/",
            f"http://127.0.0.1:{silent.getsockname()[1]}/",
        ):
            with pytest.raises(DeliveryError) as failed:
                post(url, LOCAL, timeout=1.0)
            texts.append(str(failed.value).split(" could not")[1])
        assert texts[0] == texts[1]
    finally:
        silent.close()


def test_the_allowlist_lets_in_what_it_names_and_only_that(
    hook_server: Callable[..., HookServer],
) -> None:
    s = hook_server()
    assert post(f"{s.url}/a", LOCAL) == 204
    by_name = Allowlist.from_settings({"webhook_allow": ["localhost"]})
    assert post(f"http://localhost:{s.port}/b", by_name) == 204
    by_net = Allowlist.from_settings({"webhook_allow": ["127.0.0.0/8"]})
    assert post(f"{s.url}/c", by_net) == 204
    other = Allowlist.from_settings({"webhook_allow": ["hooks.example.com"]})
    with pytest.raises(PolicyError, match="not in webhook_allow"):
        post(f"{s.url}/d", other)
    assert s.hits == ["/a", "/b", "/c"]


def test_redirects_are_not_followed(hook_server: Callable[..., HookServer]) -> None:
    inside = hook_server()
    bouncer = hook_server("redirect", f"{inside.url}/admin")
    with pytest.raises(UnrecoverableError, match="redirects are not followed"):
        post(f"{bouncer.url}/hook", LOCAL)
    assert bouncer.hits == ["/hook"] and inside.hits == []


def test_one_deadline_covers_a_server_that_trickles(hook_server: Callable[..., HookServer]) -> None:
    s = hook_server("trickle")
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="no answer within 1s"):
        asyncio.run(
            outbound.post_json(
                f"{s.url}/slow", {}, timeout=1.0, allow=LOCAL, max_response=10_000_000
            )
        )
    assert time.monotonic() - started < 20  # 100,000 bytes at 10/s would take hours


def test_at_most_the_cap_of_a_huge_answer_is_read(hook_server: Callable[..., HookServer]) -> None:
    s = hook_server("huge")
    assert post(f"{s.url}/big", LOCAL, timeout=30) == 200
    assert s.write_failed.wait(30)  # we hung up long before the 200 MiB were sent


def test_credentials_in_the_url_and_other_schemes_are_refused() -> None:
    for url in ("http://user:pw@example.com/", "file:///etc/passwd", "gopher://example.com/"):
        with pytest.raises(PolicyError):
            post(url)
