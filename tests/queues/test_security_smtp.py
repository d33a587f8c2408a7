"""SMTP is not a way to leak the password or to send as anyone, to anyone.

A real SMTP server (aiosmtpd) and the real worker process: no login over plain text unless the
URL says so, unknown SMTP_URL options stop the worker at start, the allowed senders of the
queue's settings are enforced, one address per recipient string, and no error shows the
password.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cortexflow.embedded import free_port
from cortexflow.errors import UnrecoverableError
from cortexflow.queues.smtp import SmtpSettings, build_message, send
from tests.helpers.jobs import run_handler
from tests.helpers.procs import run_cli
from tests.helpers.services import Mailbox, smtp_server

SECRET = "Zq9xWv7kPp3m"


class _Auth:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data.password == SECRET.encode()
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_Auth(),
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    yield mailbox, port
    controller.stop()


def test_no_login_over_plain_text_unless_the_url_says_so(auth_smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = auth_smtp
    with pytest.raises(UnrecoverableError, match="no TLS") as refused:
        SmtpSettings.from_url(f"smtp://bot:{SECRET}@127.0.0.1:{port}")
    assert SECRET not in str(refused.value)
    settings = SmtpSettings.from_url(f"smtp://bot:{SECRET}@127.0.0.1:{port}?auth_without_tls=1")
    msg = build_message({"to": "a@x.io", "subject": "s", "body": "b"}, "n@x.io", "j1")
    assert send(settings, msg) == {}
    assert len(mailbox.to("a@x.io")) == 1
    # TLS forms need no opt-in.
    assert SmtpSettings.from_url(f"smtps://bot:{SECRET}@h").security == "tls"
    assert SmtpSettings.from_url(f"smtp://bot:{SECRET}@h?starttls=1").security == "starttls"


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://bot:{SECRET}@mail.example.com?startls=1",  # a typo of starttls
        f"smtp://bot:{SECRET}@mail.example.com?starttls=1&verify=0",
        f"smtp://bot:{SECRET}@mail.example.com?starttls=maybe",
        f"smtp://bot:Zq9x/{SECRET}@mail.example.com?starttls=1",  # unencoded /
        f"smtp://bot:Zq9x#{SECRET}@mail.example.com:587",
        f"smtp://bot:{SECRET}@mail.example.com:notaport?starttls=1",
    ],
)
def test_bad_smtp_urls_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(UnrecoverableError) as refused:
        SmtpSettings.from_url(url)
    assert SECRET not in str(refused.value) and "Zq9x" not in str(refused.value)


def test_a_worker_with_a_bad_smtp_url_stops_at_start(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "queues.yaml").write_text(
        "version: 1\nqueues:\n  email-sending:\n"
        "    handler: cortexflow.queues.email_sending:handle\n"
    )
    r = run_cli(
        "worker",
        "email-sending",
        "--redis-url",
        redis_url,
        cwd=tmp_path,
        env={"SMTP_URL": f"smtp://bot:{SECRET}@mail.example.com?startls=1"},
        timeout=60,
    )
    assert r.returncode != 0
    assert "unknown option(s) 'startls'" in r.stderr, r.stderr
    assert SECRET not in r.stdout + r.stderr


def test_one_address_per_recipient_string() -> None:
    for to in [
        "a@x.io, evil@y.io",
        "a@x.io; evil@y.io",
        "Bob <a@x.io>, evil@y.io",
        "not-an-address",
    ]:
        with pytest.raises(UnrecoverableError, match="one email address"):
            build_message({"to": to, "subject": "s", "body": "b"}, "n@x.io", "j")
    msg = build_message({"to": ["a@x.io", "b@x.io"], "subject": "s", "body": "b"}, "n@x.io", "j")
    assert msg["To"] == "a@x.io, b@x.io"


def _run_handler(
    redis_url: str, data: dict[str, Any], settings: dict[str, Any] | None
) -> dict[str, Any]:
    from cortexflow.queues import email_sending

    result: dict[str, Any] = run_handler(
        redis_url, email_sending.handle, data,
        queue="email-sending", name="send-email", job_id="j1", settings=settings,
    )  # fmt: skip
    return result


def test_allowed_senders_are_enforced(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server() as (mailbox, url):
        monkeypatch.setenv("SMTP_URL", url + "&from=noreply@cortex.com")
        allowed = {"allowed_senders": ["support@cortex.com", "@news.cortex.com"]}
        email = {"to": "a@x.io", "subject": "s", "body": "b"}
        with pytest.raises(UnrecoverableError, match="not in the allowed_senders"):
            _run_handler(redis_url, {**email, "from": "ceo@bank.example"}, allowed)
        _run_handler(redis_url, {**email, "from": "support@cortex.com"}, allowed)
        _run_handler(redis_url, {**email, "from": "weekly@news.cortex.com"}, allowed)
        _run_handler(redis_url, email, allowed)  # the default sender
        assert len(mailbox.to("a@x.io")) == 3


def test_without_a_list_any_sender_passes_with_one_warning(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cortexflow.queues import email_sending

    email_sending.warn_any_sender.cache_clear()
    with smtp_server() as (mailbox, url):
        monkeypatch.setenv("SMTP_URL", url)
        for n in range(2):
            _run_handler(redis_url, {"to": "a@x.io", "from": f"x{n}@y.io", "subject": "s"}, {})
        assert len(mailbox.to("a@x.io")) == 2
    warnings = [r for r in caplog.records if "allowed_senders" in r.getMessage()]
    assert len(warnings) == 1
