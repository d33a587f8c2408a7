"""unix:// URLs name a file whose path may hold ``@``: that is no password, and is shown as is.

A unix:// URL has userinfo only between ``unix://`` and the socket's path
(``unix://:pw@/run/valkey.sock``); a URL that starts with the path (``unix:///srv/a@b/v.sock``)
has none, whatever its path holds.
"""

from __future__ import annotations

import pytest

from cortexflow.redact import invalid_url_reason, redact_url, scrub_secrets

AT_IN_PATH = [
    "unix:///tmp/a b%41@c/v.sock",
    "unix:///tmp/a b%41@c/v.sock?db=3",
    "unix:///srv/team@host/valkey.sock",
    "UNIX:///srv/x@y/v.sock",
]


@pytest.mark.parametrize("url", AT_IN_PATH)
def test_an_at_sign_in_a_socket_path_is_no_password(url: str) -> None:
    assert redact_url(url) == url
    message = "Error 2 connecting to unix socket: /tmp/a b%41@c/v.sock. tmp srv c"
    assert scrub_secrets(message, url) == message
    assert "***" not in scrub_secrets(f"could not reach {url}", url)


def test_a_password_option_of_a_socket_url_with_an_at_sign_is_still_hidden() -> None:
    url = "unix:///srv/a@b/v.sock?db=2&password=hunter2pw"
    shown = redact_url(url)
    assert "hunter2pw" not in shown
    assert shown.startswith("unix:///srv/a@b/v.sock?")
    assert (
        scrub_secrets("auth hunter2pw failed for /srv/a@b", url) == "auth *** failed for /srv/a@b"
    )


def test_a_real_password_of_a_socket_url_is_hidden() -> None:
    url = "unix://:secret@/path/v.sock?db=2"
    assert redact_url(url) == "unix://:***@/path/v.sock?db=2"
    assert scrub_secrets("bad password 'secret' for /path/v.sock", url) == (
        "bad password '***' for /path/v.sock"
    )


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        # A password and an @ in the path: only the password is hidden.
        ("unix://:secret@/srv/a@b/v.sock", "unix://:***@/srv/a@b/v.sock", "secret"),
        # A password holding / and @, pasted unencoded: hidden whole.
        ("unix://:s3cr/et@/run/v.sock?db=0", "unix://:***@/run/v.sock?db=0", "s3cr/et"),
        ("unix://:se@/cr3t@/run/v.sock", "unix://:***@/run/v.sock", "se@/cr3t"),
        ("unix://app:secret@/run/v.sock", "unix://app:***@/run/v.sock", "secret"),
    ],
)
def test_socket_url_passwords_next_to_at_signs(url: str, shown: str, secret: str) -> None:
    assert redact_url(url) == shown
    assert secret not in scrub_secrets(f"failed: {url} ({secret})", url)
    assert "/srv/a@b/v.sock" in scrub_secrets("at /srv/a@b/v.sock", url)


def test_the_parser_message_is_kept_for_a_socket_url_without_a_password() -> None:
    url = "unix:///srv/a@b/v.sock?db=x"
    reason = invalid_url_reason(url, ValueError("Invalid database number 'x'"))
    assert "Invalid database number" in reason
    assert "percent-encoded" in invalid_url_reason(
        "unix://:s3cr/et@/run/v.sock?db=x", ValueError("Invalid database number 'x'")
    )
