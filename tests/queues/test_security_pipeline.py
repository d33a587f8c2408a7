"""The shipped pipeline is not a relay: the example app refuses at the edge what it cannot
attribute, and no address or inbox owner comes from a webhook body.

The real example app (a subprocess) against the suite's Valkey; jobs read back with the CLI.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cortexflow.embedded import free_port
from cortexflow.errors import UnrecoverableError
from cortexflow.queues import notifications
from cortexflow.queues.channels import parse_webchat
from tests.helpers.jobs import run_handler
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, run_cli
from tests.helpers.project import REPO
from tests.helpers.services import http, post_json, telegram_update

TG_SECRET = "tg-secret-Zq9xWv7k"
TOKEN = "tok-Zq9xWv7kPp3mAb"


class App:
    def __init__(self, folder: Path, redis_url: str, proc: Proc, url: str) -> None:
        self.folder, self.redis_url, self.proc, self.url = folder, redis_url, proc, url

    def jobs(self) -> list[dict[str, Any]]:
        r = run_cli(
            "jobs", "webhook-processing", "--json", "--limit", "100",
            "-f", str(self.folder / "queues.yaml"), "--redis-url", self.redis_url,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        full = []
        for j in listed:
            shown = run_cli(
                "job", "webhook-processing", j["id"], "--json",
                "-f", str(self.folder / "queues.yaml"), "--redis-url", self.redis_url,
            )  # fmt: skip
            full.append(json.loads(shown.stdout))
        return full


@pytest.fixture
def app(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    shutil.copy(REPO / "queues.yaml", tmp_path / "queues.yaml")
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    (tmp_path / "users.json").write_text(
        json.dumps({TOKEN: {"userId": "u1", "email": "u1@example.com"}})
    )
    port = free_port()
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)  # the app gets it unset
    env = {"PYTHONUNBUFFERED": "1", "TELEGRAM_WEBHOOK_SECRET": TG_SECRET, "REDIS_URL": redis_url}
    proc = Proc(
        [sys.executable, str(REPO / "examples" / "api_service" / "app.py"),
         "--port", str(port), "-f", "queues.yaml", "--rate", "5"],
        cwd=tmp_path, env=env, name="app",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return http("GET", url + "/health")[0] in (200, 503)
        except OSError:
            return False

    try:
        wait_for(answers, 30, message=lambda: f"the app answers\n{proc.log()}")
        yield App(tmp_path, redis_url, proc, url)
    finally:
        proc.stop()


def test_webchat_needs_a_token_and_the_body_cannot_pick_user_or_address(app: App) -> None:
    hostile = {"userId": "victim", "email": "a@b.c, d@e.f", "text": "click here"}
    status, _, _ = post_json(f"{app.url}/webhooks/webchat", hostile)
    assert status == 401
    status, _, _ = post_json(
        f"{app.url}/webhooks/webchat", hostile, {"Authorization": "Bearer not-a-token"}
    )
    assert status == 401
    assert app.jobs() == []
    status, answer, _ = post_json(
        f"{app.url}/webhooks/webchat", hostile, {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, answer
    [job] = app.jobs()
    stored = json.dumps(job["data"])
    assert job["data"]["payload"]["userId"] == "u1"
    assert "victim" not in stored and "a@b.c" not in stored and "d@e.f" not in stored
    assert job["data"]["metadata"] == {"email": "u1@example.com"}
    assert TOKEN not in stored


def test_provider_webhooks_are_verified_before_anything_is_queued(app: App) -> None:
    update = telegram_update(4242, "hi", update_id=7001)
    status, _, _ = post_json(
        f"{app.url}/webhooks/telegram", update, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}
    )
    assert status == 401
    status, _, _ = post_json(f"{app.url}/webhooks/telegram", update)
    assert status == 401
    status, _, _ = post_json(f"{app.url}/webhooks/whatsapp", {"entry": []})
    assert status == 503  # WHATSAPP_APP_SECRET unset: fail closed
    assert app.jobs() == []


def test_only_allowlisted_headers_are_stored_and_never_a_secret(app: App) -> None:
    update = telegram_update(4242, "hi", update_id=7002)
    status, answer, _ = post_json(
        f"{app.url}/webhooks/telegram", update,
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "X-Api-Key": "key-Zq9xWv7k",
         "Cookie": "session=abc123456", "X-Custom": "whatever"},
    )  # fmt: skip
    assert status == 200, answer
    [job] = app.jobs()
    headers = job["data"]["headers"]
    assert set(headers) <= {
        "content-type", "user-agent", "x-hub-signature-256",
        "x-telegram-bot-api-secret-token-sha256",
    }  # fmt: skip
    stored = json.dumps(job["data"])
    for secret in (TG_SECRET, "key-Zq9xWv7k", "abc123456"):
        assert secret not in stored


def test_a_replayed_delivery_is_not_queued_twice(app: App) -> None:
    update = telegram_update(4242, "hi", update_id=7003)
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    first = post_json(f"{app.url}/webhooks/telegram", update, headers)
    again = post_json(f"{app.url}/webhooks/telegram", update, headers)
    assert first[0] == again[0] == 200
    assert again[1].get("duplicate") is True
    assert len(app.jobs()) == 1


def test_size_and_rate_caps(app: App) -> None:
    big = {"text": "x" * (300 * 1024)}
    try:
        status, _, _ = post_json(
            f"{app.url}/webhooks/webchat", big, {"Authorization": f"Bearer {TOKEN}"}
        )
    except OSError:  # the app answered 413 and hung up while the rest was still being sent
        status = 413
    assert status == 413
    assert app.jobs() == []
    # 30 at once (the app allows 5 a second per client): a burst no machine spreads over 6 s.
    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(
            pool.map(
                lambda _: post_json(f"{app.url}/webhooks/webchat", {"text": "hi"})[0], range(30)
            )
        )
    assert 429 in statuses and 401 in statuses


def test_the_webchat_parser_takes_no_address_from_the_body() -> None:
    [message] = parse_webchat({"userId": "u", "text": "t", "email": "a@b.c, d@e.f"})
    assert "email" not in message.metadata


def test_an_email_notification_goes_to_one_address_only(redis_url: str) -> None:
    note = {"userId": "u", "type": "email", "message": "m", "email": "a@b.c, d@e.f"}
    with pytest.raises(UnrecoverableError, match="one email address"):
        run_handler(
            redis_url, notifications.handle, note,
            queue="notifications", name="send-notification", job_id="n1",
        )  # fmt: skip
