"""The five shipped queues end to end, with real parts: `cortexflow up` on (a copy of) the shipped
queues.yaml, a real SMTP server, the example HTTP app of examples/api_service, real webhooks.

One `up` serves the whole module (starting it is the slow part); each test uses its own users,
addresses and days, so they do not see each other's jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cortexflow.config import load_config
from cortexflow.embedded import free_port
from cortexflow.engine import connect
from cortexflow.engine.jobs import Job
from cortexflow.engine.queue import QueueEngine
from cortexflow.queues.analytics import read_daily
from cortexflow.queues.notifications import read_inbox
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, cortexflow_argv, run_cli
from tests.helpers.project import REPO, write_shipped_project
from tests.helpers.services import (
    Mailbox,
    answers,
    body_text,
    http,
    post_json,
    smtp_server,
    telegram_update,
    whatsapp_webhook,
)

TG_SECRET = "tg-secret-token"
WA_SECRET = "wa-app-secret"


@dataclass
class Stack:
    folder: Path
    config: Path
    redis_url: str
    app_url: str
    mailbox: Mailbox
    up: Proc

    def cli(self, *args: str, input: str | None = None) -> Any:
        return run_cli(*args, "-f", str(self.config), "--redis-url", self.redis_url, input=input)

    def job(self, queue: str, job_id: str) -> Job | None:
        async def go() -> Job | None:
            client = connect(self.redis_url)
            try:
                cfg = load_config(self.config, check_imports=False)
                return await QueueEngine(client, cfg.queues[queue], cfg.redis.prefix).get_job(
                    job_id
                )
            finally:
                await client.aclose()

        return asyncio.run(go())

    def finished(self, queue: str, job_id: str, timeout: float = 30.0) -> Job:
        def done() -> Job | None:
            job = self.job(queue, job_id)
            return job if job and job.state in ("completed", "failed") else None

        found: Job = wait_for(
            done, timeout, message=lambda: f"{queue}/{job_id} finished\n{self.up.log()[-3000:]}"
        )
        return found

    def read(self, fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            client = connect(self.redis_url)
            try:
                return await fn(client, *args)
            finally:
                await client.aclose()

        return asyncio.run(go())


@pytest.fixture(scope="module")
def stack(new_db: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_url = new_db()
    folder = tmp_path_factory.mktemp("shipped")
    config = write_shipped_project(folder)
    (folder / "contacts.json").write_text(json.dumps({"telegram:4242": "ana@example.com"}))
    with smtp_server() as (mailbox, smtp_url):
        env = {
            "PYTHONUNBUFFERED": "1",
            "SMTP_URL": smtp_url,
            "SMTP_FROM": "bot@cortex.example",
            "TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
            "WHATSAPP_APP_SECRET": WA_SECRET,
        }
        up = Proc(cortexflow_argv("up", "--redis-url", redis_url), cwd=folder, env=env, name="up")
        port = free_port()
        app = Proc(
            [sys.executable, str(REPO / "examples" / "api_service" / "app.py"),
             "--port", str(port), "-f", str(config), "--contacts", "contacts.json"],
            cwd=folder, env={**env, "REDIS_URL": redis_url}, name="app",
        )  # fmt: skip
        try:
            up.wait_for(r"service\.0 \(pid \d+\) ready$", timeout=60)  # one shared process
            app_url = f"http://127.0.0.1:{port}"
            wait_for(
                lambda: answers(app_url + "/health"),
                30,
                message=lambda: f"the app answers\n{app.log()}",
            )
            yield Stack(folder, config, redis_url, app_url, mailbox, up)
        finally:
            app.stop()
            up.stop()


def test_telegram_webhook_becomes_an_email_with_the_orchestrators_reply(stack: Stack) -> None:
    update = telegram_update(4242, "hello there", update_id=1001)
    status, answer, _ = post_json(
        f"{stack.app_url}/webhooks/telegram", update,
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
    )  # fmt: skip
    assert status == 200 and answer["success"] is True

    email = stack.mailbox.wait_for("ana@example.com")
    text = body_text(email)
    assert "Hello, Ana! How can I help you today?" in text
    assert email.get_content_type() == "multipart/alternative"
    assert "Hello, Ana!" in body_text(email, "html")
    assert email["From"] == "bot@cortex.example"
    assert email["Subject"] == "Re: your telegram message"

    webhook = stack.finished("webhook-processing", answer["jobId"])
    assert webhook.state == "completed" and webhook.result["verified"] is True
    [message_job] = webhook.result["messages"]
    processed = stack.finished("message-processing", message_job)
    assert processed.data["userId"] == "4242"
    assert processed.data["metadata"]["email"] == "ana@example.com"
    assert processed.result["reply"] == "Hello, Ana! How can I help you today?"

    # message-processing tracked it on analytics
    today = datetime.now(UTC).date().isoformat()
    stats = wait_for(
        lambda: stack.read(read_daily, today)["events"].get("message_processed"),
        30,
        message="tracked",
    )
    assert stats["count"] >= 1 and stats["sums"]["tokens"] > 0


def test_signed_whatsapp_webhook_reply_lands_in_the_in_app_inbox(stack: Stack) -> None:
    body = whatsapp_webhook("34600111222", "What are your opening hours?", "wamid.ABC1")
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(WA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    status, answer = http(
        "POST", f"{stack.app_url}/webhooks/whatsapp", raw,
        {"content-type": "application/json", "X-Hub-Signature-256": signature},
    )  # fmt: skip
    assert status == 200

    inbox = wait_for(
        lambda: stack.read(read_inbox, "34600111222"), 30, message="an in-app notification"
    )
    [note] = inbox
    assert note["title"] == "Re: your whatsapp message"
    assert "open Monday to Friday" in note["message"]
    assert note["data"] == {"inReplyTo": "wamid.ABC1", "channelType": "whatsapp"}
    assert stack.finished("webhook-processing", answer["jobId"]).result["verified"] is True
    # the stream is capped
    info = stack.read(lambda c, k: c.xinfo_stream(k), "cortexflow:inbox:{34600111222}")
    assert info["length"] == 1


def test_track_events_are_aggregated_per_day(stack: Stack) -> None:
    def enqueue(user: str, job_id: str) -> str:
        event = {"event": "message_sent", "data": {"tokens": 100, "cost": 0.002},
                 "userId": user, "timestamp": "2024-05-01T12:00:00.000Z"}  # fmt: skip
        result = stack.cli(
            "enqueue", "analytics", "-", "--name", "track-event", "--job-id", job_id,
            input=json.dumps(event),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    ids = [enqueue("user-123", "ev-1"), enqueue("user-123", "ev-2"), enqueue("user-9", "ev-3")]
    for job_id in ids:
        assert stack.finished("analytics", job_id).state == "completed"
    day = stack.read(read_daily, "2024-05-01")
    assert day["uniqueUsers"] == 2
    sent = day["events"]["message_sent"]
    assert sent["count"] == 3 and sent["uniqueUsers"] == 2
    assert sent["sums"]["tokens"] == 300
    assert sent["sums"]["cost"] == pytest.approx(0.006)

    # From the shell, through queues.yaml's Redis: `cortexflow analytics DAY`, and the module.
    shown = stack.cli("analytics", "2024-05-01")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["events"]["message_sent"]["count"] == 3
    assert stack.cli("analytics", "yesterday").returncode == 2


def test_bad_signature_fails_once_without_retries(stack: Stack) -> None:
    update = telegram_update(777, "hello", update_id=2002)
    status, answer, _ = post_json(
        f"{stack.app_url}/webhooks/telegram", update,
        {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"},
    )  # fmt: skip
    assert status == 401  # refused at the edge: nothing queued
    assert "missing or wrong" in answer["error"]
    # A webhook queued some other way is checked again by the worker.
    data = {"webhookId": "wh-forged", "channel": "telegram", "payload": update,
            "headers": {"x-telegram-bot-api-secret-token": "not-the-secret"}}  # fmt: skip
    queued = stack.cli("enqueue", "webhook-processing", "-", input=json.dumps(data))
    assert queued.returncode == 0, queued.stderr
    job = stack.finished("webhook-processing", queued.stdout.strip())
    assert job.state == "failed" and job.attempts_made == 1 and job.attempts == 3

    listed = stack.cli("jobs", "webhook-processing", "--state", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    [failed] = [j for j in json.loads(listed.stdout) if j["id"] == job.id]
    assert failed["attemptsMade"] == 1
    assert "X-Telegram-Bot-Api-Secret-Token is missing or wrong" in failed["error"]
    assert "SignatureError" in failed["stacktrace"]
    text = stack.cli("jobs", "webhook-processing", "--state", "failed")
    assert job.id in text.stdout
    assert stack.job("message-processing", "telegram-tg-777-20020") is None


def _send_email(stack: Stack, to: str) -> str:
    email = {"to": to, "subject": "Status", "body": "All good.", "html": "<p>All good.</p>"}
    result = stack.cli("enqueue", "email-sending", "-", "--name", "send-email",
                       input=json.dumps(email))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_smtp_451_is_retried_and_delivered(stack: Stack) -> None:
    stack.mailbox.data_replies["flaky@example.com"] = ["451 4.3.0 Try again later"]
    job = stack.finished("email-sending", _send_email(stack, "flaky@example.com"))
    assert job.state == "completed", job.error
    assert job.attempts_made == 2  # a 451, then delivered
    assert stack.mailbox.data_attempts["flaky@example.com"] == 2
    assert len(stack.mailbox.to("flaky@example.com")) == 1
    assert "All good." in body_text(stack.mailbox.to("flaky@example.com")[0])


def test_smtp_550_fails_after_one_attempt(stack: Stack) -> None:
    job = stack.finished("email-sending", _send_email(stack, "bounce@example.com"))
    assert job.state == "failed"
    assert job.attempts_made == 1 and job.attempts == 5
    assert "550" in (job.error or "") and "no such user" in (job.error or "")
    assert stack.mailbox.to("bounce@example.com") == []


def test_invalid_payloads_are_refused_with_every_violation(stack: Stack) -> None:
    bad = stack.cli("enqueue", "notifications", "-",
                    input=json.dumps({"userId": "", "type": "pigeon"}))  # fmt: skip
    assert bad.returncode == 1
    for fragment in ("/userId", "/type", "message"):
        assert fragment in bad.stderr
    status, answer, _ = post_json(f"{stack.app_url}/webhooks/fax", {"x": 1})
    assert status == 404 and "unknown channel" in answer["error"]


def test_a_webhook_of_three_messages_fans_out_through_the_declared_routes(stack: Stack) -> None:
    """webhook-processing -> 3 message-processing -> 3 notifications (email) + 3 analytics ->
    3 email-sending, all through queues.yaml's next: routes; the same webhook delivered again
    adds nothing anywhere."""
    body = whatsapp_webhook("34600999000", "one", "wamid.T1")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"] += [
        {**value["messages"][0], "id": "wamid.T2", "text": {"body": "two"}},
        {**value["messages"][0], "id": "wamid.T3", "text": {"body": "three"}},
    ]
    raw = json.dumps(body)
    signature = "sha256=" + hmac.new(WA_SECRET.encode(), raw.encode(), hashlib.sha256).hexdigest()
    webhook = {"webhookId": "wh-three", "channel": "whatsapp", "rawBody": raw,
               "headers": {"x-hub-signature-256": signature},
               "metadata": {"email": "three@example.com"}}  # fmt: skip

    def deliver(job_id: str) -> Job:
        result = stack.cli(
            "enqueue", "webhook-processing", "-", "--name", "process-webhook", "--job-id", job_id,
            input=json.dumps(webhook),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return stack.finished("webhook-processing", job_id)

    first = deliver("wh-three-1")
    messages = [f"whatsapp-wamid.T{i}" for i in (1, 2, 3)]
    assert first.state == "completed" and first.result["messages"] == messages
    chain = {
        "message-processing": messages,
        "notifications": [f"reply-{m}" for m in messages],
        "analytics": [f"track-{m}" for m in messages],
        "email-sending": [f"email-reply-{m}" for m in messages],
    }
    for queue, ids in chain.items():
        for job_id in ids:
            assert stack.finished(queue, job_id).state == "completed", (queue, job_id)
    child = stack.job("message-processing", messages[0])
    assert child is not None and child.parent == ("webhook-processing", "wh-three-1")

    def mails() -> list[Any]:
        return [m for m in stack.mailbox.messages if m["To"] == "three@example.com"]

    wait_for(lambda: len(mails()) == 3, 30, message=lambda: f"3 emails, got {len(mails())}")
    assert [m["Subject"] for m in mails()] == ["Re: your whatsapp message"] * 3
    assert all("Thanks for your message" in body_text(m) for m in mails())

    again = deliver("wh-three-2")  # the same webhook, delivered again
    assert again.state == "completed" and again.result["messages"] == messages

    def added(queue: str) -> list[str]:
        entries = stack.read(lambda c, k: c.xrange(k), f"{{cortexflow:{queue}}}:events")
        return sorted(
            f[b"id"].decode()
            for _, f in entries
            if f[b"e"] == b"added" and f[b"id"].decode() in chain[queue]
        )

    for queue, ids in chain.items():
        assert added(queue) == sorted(ids), queue
    assert len(mails()) == 3
