"""The shipped handlers one by one, in this process: real Redis (the session's Valkey), a real
SMTP server and a real HTTP server; the jobs a handler adds -- through the `next:` routes the
shipped queues.yaml declares for its queue, or ``add_job`` -- are recorded, not enqueued."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cortexflow.config import load_config
from cortexflow.config.model import QueueConfig
from cortexflow.embedded import free_port
from cortexflow.engine import connect
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import Router
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.options import AddOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.engine.routes import plan
from cortexflow.errors import UnrecoverableError
from cortexflow.queues import (
    analytics,
    email_sending,
    message_processing,
    notifications,
    orchestrator,
    webhook_processing,
)
from cortexflow.queues.channels import (
    MalformedWebhookError,
    SignatureError,
    parse_telegram,
    parse_webchat,
    parse_whatsapp,
)
from cortexflow.queues.smtp import (
    SmtpPermanentError,
    SmtpSettings,
    SmtpTransientError,
    build_message,
    send,
)
from cortexflow.worker.context import JobContext
from tests.helpers.project import REPO
from tests.helpers.services import (
    Mailbox,
    body_text,
    smtp_server,
    telegram_update,
    whatsapp_webhook,
)


@dataclass
class Added:
    queue: str
    name: str
    data: Any
    job_id: str | None


@dataclass
class Harness:
    """Runs one handler with a real JobContext on Redis; records the jobs it adds."""

    url: str
    added: list[Added] = field(default_factory=list)

    def run(
        self,
        handler: Callable[..., Awaitable[Any]],
        data: Any,
        job_id: str = "job-1",
        settings: dict[str, Any] | None = None,
    ) -> Any:
        async def go() -> Any:
            client = connect(self.url)

            async def enqueue(queue: str, name: str, payload: Any, opts: AddOptions) -> str:
                self.added.append(Added(queue, name, payload, opts.get("job_id")))
                return opts.get("job_id") or f"id-{len(self.added)}"

            # A real leased job, so the handler's progress and log writes are accepted.
            engine = QueueEngine(client, QueueConfig(name="q", handler="x:y"), "test")
            await engine.obliterate(force=True)  # the job of a previous run in this test
            await engine.add("t", {}, JobOptions(job_id=job_id))
            (leased,) = (await QueueConsumer(engine, "w", client).fetch(1)).jobs
            ctx = JobContext(
                engine, leased.token, id=job_id, name="t", queue="q", attempt=1,
                priority=0, created_at=time.time(), data=data, enqueue=enqueue,
                settings=settings,
            )  # fmt: skip
            try:
                result = await handler(data, ctx)
            finally:
                await client.aclose()
            self.routed(handler, job_id, result)
            return result

        return asyncio.run(go())

    def routed(self, handler: Callable[..., Any], job_id: str, result: Any) -> None:
        """Record the jobs the shipped `next:` routes of the handler's queue add for
        ``result`` (checked against their targets' payload schemas, as the worker does)."""
        shipped = load_config(REPO / "queues.yaml", check_imports=False)
        [queue] = [
            q
            for q in shipped.queues.values()
            if q.handler.endswith(handler.__module__.rsplit(".", 1)[-1] + ":handle")
        ]
        if not queue.routes:
            return
        job = Job.from_hash(queue, job_id, {b"name": b"t", b"data": b"{}", b"state": b"active"})
        Router(queue, shipped.queue, shipped.redis.prefix, outbox=False).completed(job, result)
        for h in plan(queue.routes, result, queue.name, job_id):
            self.added += [Added(h.to, j.name, j.data, j.id) for j in h.jobs]

    def read(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def go() -> Any:
            client = connect(self.url)
            try:
                return await fn(client, *args)
            finally:
                await client.aclose()

        return asyncio.run(go())


async def _logs(client: Any, job_id: str) -> list[str]:
    return await QueueEngine(client, QueueConfig(name="q", handler="x:y"), "test").get_logs(job_id)


@pytest.fixture
def harness(redis_url: str) -> Harness:
    return Harness(redis_url)


# -- channels ----------------------------------------------------------------------------------


def test_whatsapp_messages_are_normalised_and_receipts_skipped() -> None:
    body = whatsapp_webhook("34600111222", "hi", "wamid.1", name="Bo")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"].append({"from": "34600111222", "id": "wamid.2", "timestamp": "1714564801",
                              "type": "interactive",
                              "interactive": {"button_reply": {"id": "b1", "title": "Yes"}}})  # fmt: skip
    value["messages"].append({"from": "34600111222", "id": "wamid.3", "type": "image"})
    [first, second] = parse_whatsapp(body)
    assert first.to_payload() == {
        "messageId": "wamid.1", "channelType": "whatsapp", "userId": "34600111222",
        "content": "hi", "timestamp": "2024-05-01T12:00:00+00:00",
        "metadata": {"name": "Bo", "phoneNumberId": "PN-1"},
    }  # fmt: skip
    assert second.content == "Yes"
    receipts = {"object": "whatsapp_business_account",
                "entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.1"}]}}]}]}  # fmt: skip
    assert parse_whatsapp(receipts) == []
    with pytest.raises(MalformedWebhookError):
        parse_whatsapp({"object": "page"})


def test_telegram_updates_are_normalised() -> None:
    [msg] = parse_telegram(telegram_update(4242, "hello", update_id=7))
    assert (msg.message_id, msg.user_id, msg.content) == ("tg-4242-70", "4242", "hello")
    assert msg.metadata == {"chatId": 4242, "name": "Ana"}
    assert parse_telegram({"update_id": 8, "callback_query": {"id": "1"}}) == []
    with pytest.raises(MalformedWebhookError):
        parse_telegram({"message": {}})


def test_webchat_needs_a_user_and_text() -> None:
    [msg] = parse_webchat({"sessionId": "s-1", "text": "hey", "email": "a@b.co"})
    assert (msg.user_id, msg.metadata) == ("s-1", {"sessionId": "s-1"})  # no address from a body
    with pytest.raises(MalformedWebhookError):
        parse_webchat({"text": "who am I"})


def _webhook(channel: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"webhookId": "wh-1", "channel": channel, "payload": body, **extra}


def test_webhook_queues_each_message_once_under_a_derived_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3")
    data = _webhook("telegram", telegram_update(1, "hi", 5),
                    headers={"X-TELEGRAM-BOT-API-SECRET-TOKEN": ["s3"]},
                    metadata={"email": "x@y.zz"})  # fmt: skip
    result = harness.run(webhook_processing.handle, data)
    assert {k: result[k] for k in ("channel", "verified", "messages")} == {
        "channel": "telegram",
        "verified": True,
        "messages": ["telegram-tg-1-50"],
    }
    [added] = harness.added
    assert (added.queue, added.name, added.job_id) == (
        "message-processing",
        "process-message",
        "telegram-tg-1-50",
    )
    assert added.data["metadata"] == {"chatId": 1, "name": "Ana", "email": "x@y.zz"}


def test_whatsapp_signature_is_an_hmac_of_the_raw_body(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "app-secret")
    raw = json.dumps(whatsapp_webhook("1", "hola", "wamid.9"), indent=1)  # not re-serialisable
    good = "sha256=" + hmac.new(b"app-secret", raw.encode(), hashlib.sha256).hexdigest()
    ok = {"webhookId": "wh-2", "channel": "whatsapp", "rawBody": raw,
          "headers": {"x-hub-signature-256": good}}  # fmt: skip
    assert harness.run(webhook_processing.handle, ok)["verified"] is True
    assert harness.added[0].data["content"] == "hola"  # parsed from rawBody

    for headers in ({"x-hub-signature-256": good[:-1] + "0"}, {}):
        with pytest.raises(SignatureError):
            harness.run(webhook_processing.handle, {**ok, "headers": headers})
    with pytest.raises(SignatureError, match="rawBody"):  # the signature needs the exact bytes
        harness.run(webhook_processing.handle, _webhook("whatsapp", json.loads(raw),
                                                        headers={"x-hub-signature-256": good}))  # fmt: skip
    assert issubclass(SignatureError, UnrecoverableError)


def test_without_a_secret_webhooks_pass_unverified_and_the_job_says_so(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    result = harness.run(
        webhook_processing.handle, _webhook("telegram", telegram_update(2, "x", 6))
    )
    assert result["verified"] is False
    assert "not verified" in harness.read(_logs, "job-1")[0]


# -- orchestrator and message-processing --------------------------------------------------------


MESSAGE = {"messageId": "m-1", "channelType": "webchat", "userId": "u-1",
           "content": "How much does the pro plan cost?", "timestamp": "2024-05-01T12:00:00Z"}  # fmt: skip


def test_rule_based_orchestrator_is_deterministic() -> None:
    bot = orchestrator.RuleBasedOrchestrator()
    message = orchestrator.Message.from_payload(MESSAGE)
    assert bot.reply(message) == bot.reply(message)
    assert "plans start at" in bot.reply(message).text
    echo = orchestrator.Message.from_payload({**MESSAGE, "content": "  my parcel is late "})
    assert bot.reply(echo).text.startswith('Thanks for your message: "my parcel is late"')


def test_reply_is_in_app_without_an_email_and_email_with_one(harness: Harness) -> None:
    harness.run(message_processing.handle, MESSAGE, job_id="mp-1")
    note, track = harness.added
    assert (note.queue, note.job_id, note.data["type"]) == ("notifications", "reply-mp-1", "in-app")
    assert (track.queue, track.job_id, track.data["event"]) == (
        "analytics",
        "track-mp-1",
        "message_processed",
    )
    assert track.data["data"]["tokens"] > 0
    harness.added.clear()
    harness.run(message_processing.handle, {**MESSAGE, "metadata": {"email": "u@x.io"}})
    assert harness.added[0].data["type"] == "email"
    assert harness.added[0].data["email"] == "u@x.io"


class AsyncBot:
    async def reply(self, message: orchestrator.Message) -> orchestrator.Reply:
        return orchestrator.Reply(f"async:{message.content}", tokens=3, cost=0.5)


def shouting(message: orchestrator.Message) -> str:
    return message.content.upper()


def test_orchestrator_is_chosen_by_import_path(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORTEXFLOW_ORCHESTRATOR", f"{__name__}:AsyncBot")
    assert harness.run(message_processing.handle, MESSAGE)["reply"].startswith("async:How")
    assert harness.added[1].data["data"]["cost"] == 0.5
    monkeypatch.setenv("CORTEXFLOW_ORCHESTRATOR", f"{__name__}:shouting")
    assert harness.run(message_processing.handle, MESSAGE)["reply"] == MESSAGE["content"].upper()
    # queues.yaml's `settings: {orchestrator: ...}` wins over the environment.
    settings = {"orchestrator": f"{__name__}:AsyncBot"}
    out = harness.run(message_processing.handle, MESSAGE, settings=settings)
    assert out["reply"].startswith("async:How")
    monkeypatch.setenv("CORTEXFLOW_ORCHESTRATOR", f"{__name__}:nope")
    with pytest.raises(UnrecoverableError, match=f"orchestrator {__name__}:nope"):
        harness.run(message_processing.handle, MESSAGE)


# -- analytics -----------------------------------------------------------------------------------


def test_analytics_counts_a_job_once_even_if_it_runs_twice(harness: Harness) -> None:
    event = {"event": "reply", "userId": "u1", "timestamp": "2024-05-02T23:30:00-02:00",
             "data": {"tokens": 10, "cost": 0.25, "model": "x", "cached": True}}  # fmt: skip
    assert harness.run(analytics.handle, event, job_id="a1")["counted"] is True
    assert harness.run(analytics.handle, event, job_id="a1")["counted"] is False
    harness.run(analytics.handle, {**event, "userId": "u2"}, job_id="a2")
    harness.run(analytics.handle, {"event": "signup"}, job_id="a3")  # no user, no data, no time
    day = harness.read(analytics.read_daily, "2024-05-03")  # 23:30 at -02:00 is the 3rd in UTC
    assert day == {"day": "2024-05-03", "uniqueUsers": 2, "events": {
        "reply": {"count": 2, "uniqueUsers": 2, "sums": {"tokens": 20.0, "cost": 0.5}}}}  # fmt: skip
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert harness.read(analytics.read_daily, today)["events"]["signup"]["count"] == 1


# -- email ---------------------------------------------------------------------------------------


def test_smtp_url_forms() -> None:
    s = SmtpSettings.from_url("smtp://me%40x.io:p%40ss@mail.x.io?starttls=1&from=bot@x.io")
    assert (s.host, s.port, s.security, s.username, s.password, s.sender) == (
        "mail.x.io", 587, "starttls", "me@x.io", "p@ss", "bot@x.io")  # fmt: skip
    assert "p@ss" not in repr(s) and "p@ss" not in s.describe()
    assert SmtpSettings.from_url("smtps://h").port == 465
    assert SmtpSettings.from_url("smtp://h:2525?timeout=2").timeout == 2.0
    with pytest.raises(UnrecoverableError) as bad:
        SmtpSettings.from_url("http://user:hunter2@h")
    assert "hunter2" not in str(bad.value)


def test_message_is_multipart_alternative_and_headers_cannot_be_injected() -> None:
    msg = build_message({"to": ["a@x.io", "b@x.io"], "subject": "Hi", "html": "<p>Hi &amp; bye</p>"},
                        "noreply@x.io", "job:1")  # fmt: skip
    assert msg.get_content_type() == "multipart/alternative"
    assert body_text(msg).strip() == "Hi & bye"
    assert msg["To"] == "a@x.io, b@x.io" and msg["Message-ID"] == "<job_1.cortexflow@x.io>"
    with pytest.raises(UnrecoverableError):
        build_message({"to": "a@x.io", "subject": "x\nBcc: evil@x.io", "body": "b"}, "n@x.io", "j")


class Authenticator:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bot", b"pw-1")
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=Authenticator(), auth_require_tls=False,
                            auth_exclude_mechanism=["LOGIN"])  # fmt: skip
    controller.start()
    yield mailbox, port
    controller.stop()


def test_smtp_login_and_a_wrong_password_is_permanent_and_never_shown(
    auth_smtp: tuple[Mailbox, int],
) -> None:
    mailbox, port = auth_smtp
    msg = build_message({"to": "a@x.io", "subject": "s", "body": "b"}, "n@x.io", "j1")
    assert (
        send(SmtpSettings.from_url(f"smtp://bot:pw-1@127.0.0.1:{port}?auth_without_tls=1"), msg)
        == {}
    )
    assert len(mailbox.to("a@x.io")) == 1
    with pytest.raises(SmtpPermanentError) as refused:
        send(
            SmtpSettings.from_url(
                f"smtp://bot:wrong-secret@127.0.0.1:{port}?timeout=5&auth_without_tls=1"
            ),
            msg,
        )
    assert "535" in str(refused.value) and "wrong-secret" not in str(refused.value)


def test_smtp_failures_that_may_pass_are_transient() -> None:
    msg = build_message({"to": "a@x.io", "subject": "s", "body": "b"}, "n@x.io", "j1")
    with pytest.raises(SmtpTransientError, match="ConnectionRefusedError"):
        send(SmtpSettings.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"), msg)
    with smtp_server() as (mailbox, url):
        mailbox.data_replies["a@x.io"] = ["452 4.3.1 Insufficient storage"]
        with pytest.raises(SmtpTransientError, match="452"):
            send(SmtpSettings.from_url(url), msg)
        # some recipients refused: sent to the others, the refusals reported
        both = build_message({"to": ["a@x.io", "bounce@x.io"], "subject": "s", "body": "b"},
                             "n@x.io", "j2")  # fmt: skip
        refused = send(SmtpSettings.from_url(url), both)
        assert list(refused) == ["bounce@x.io"] and refused["bounce@x.io"][0] == 550


def test_email_handler_needs_smtp_url(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_URL", raising=False)
    with pytest.raises(UnrecoverableError, match="SMTP_URL is not set"):
        harness.run(email_sending.handle, {"to": "a@x.io", "subject": "s", "body": "b"})


# -- notifications -------------------------------------------------------------------------------


class Hook(http.server.BaseHTTPRequestHandler):
    """Answers POST /<status> with that status; /slow sleeps past the client's timeout."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.received.append(body)
        if self.path == "/slow":
            time.sleep(1.5)
        self.send_response(200 if self.path == "/slow" else int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LOCAL = {"webhook_allow": ["127.0.0.1"]}  # the test server is on loopback


def test_webhook_notifications(
    harness: Harness, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = {"userId": "u1", "type": "webhook", "title": "T", "message": "M", "data": {"k": 1}}
    assert harness.run(notifications.handle, {**note, "url": f"{hook_url}/204"}, "n1", LOCAL) == {
        "type": "webhook", "status": 204}  # fmt: skip
    assert Hook.received[-1] == {"userId": "u1", "type": "webhook", "title": "T", "message": "M",
                                 "data": {"k": 1}, "notificationId": "n1"}  # fmt: skip
    with pytest.raises(UnrecoverableError, match="404"):
        harness.run(notifications.handle, {**note, "url": f"{hook_url}/404"}, settings=LOCAL)
    for transient in ("429", "408", "503"):
        with pytest.raises(ConnectionError, match=transient):
            harness.run(
                notifications.handle, {**note, "url": f"{hook_url}/{transient}"}, settings=LOCAL
            )
    monkeypatch.setenv("NOTIFY_WEBHOOK_TIMEOUT", "0.3")
    with pytest.raises(ConnectionError, match="no answer within"):
        harness.run(notifications.handle, {**note, "url": f"{hook_url}/slow"}, settings=LOCAL)
    with pytest.raises(ConnectionError):
        harness.run(
            notifications.handle,
            {**note, "url": f"http://127.0.0.1:{free_port()}/"},
            settings=LOCAL,
        )
    with pytest.raises(UnrecoverableError, match="http"):
        harness.run(notifications.handle, {**note, "url": "file:///etc/passwd"})


def test_email_notification_becomes_an_email_job(harness: Harness) -> None:
    note = {"userId": "u1", "type": "email", "title": "<Hi>", "message": "a & b"}
    with pytest.raises(UnrecoverableError, match="no email address"):
        harness.run(notifications.handle, note)
    harness.run(notifications.handle, {**note, "email": "u1@x.io"}, "n7")
    [email] = harness.added
    assert (email.queue, email.job_id) == ("email-sending", "email-n7")
    assert email.data == {"to": "u1@x.io", "subject": "<Hi>", "body": "a & b",
                          "html": "<h3>&lt;Hi&gt;</h3><p>a &amp; b</p>"}  # fmt: skip


def test_in_app_inbox_is_capped_and_written_once_per_job(
    harness: Harness, redis_client: Any
) -> None:
    note = {"userId": "u-9", "type": "in-app", "title": "T", "message": "first", "data": {"a": 1}}
    assert harness.run(notifications.handle, note, "n1")["added"] is True
    assert harness.run(notifications.handle, note, "n1")["added"] is False  # a re-run
    harness.run(notifications.handle, {**note, "message": "second"}, "n2")
    inbox = harness.read(notifications.read_inbox, "u-9")
    assert [(n["message"], n["notificationId"], n["data"]) for n in inbox] == [
        ("second", "n2", {"a": 1}), ("first", "n1", {"a": 1})]  # fmt: skip
    key = notifications.inbox_key("u-9")
    pipe = redis_client.pipeline()
    for i in range(1500):
        pipe.xadd(key, {"message": str(i)}, maxlen=notifications.INBOX_MAXLEN, approximate=True)
    pipe.execute()
    harness.run(notifications.handle, note, "n3")
    assert 1000 <= redis_client.xlen(key) <= 1100
