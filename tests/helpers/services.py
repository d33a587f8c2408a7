"""The services the shipped queues talk to, for real: an SMTP server (aiosmtpd) whose answers a
test can script, a tiny HTTP client, and the webhook bodies of Telegram and WhatsApp."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from cortexflow.embedded import free_port
from tests.helpers.poll import wait_for


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers as a test scripts it.

    ``data_replies[rcpt]``: replies to the next DATA commands for that recipient (then 250);
    a recipient starting with ``bounce`` is refused at RCPT with 550.
    """

    messages: list[EmailMessage] = field(default_factory=list)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    data_attempts: Counter[str] = field(default_factory=Counter)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("bounce"):
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.data_attempts[rcpt] += 1
            for rcpt in envelope.rcpt_tos:
                if self.data_replies.get(rcpt):
                    return self.data_replies[rcpt].pop(0)
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
        return "250 2.0.0 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]

    def wait_for(self, address: str, timeout: float = 30.0) -> EmailMessage:
        found: list[EmailMessage] = wait_for(
            lambda: self.to(address), timeout, message=f"no email to {address}"
        )
        return found[0]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, str]]:
    """A real SMTP server on 127.0.0.1 and the SMTP_URL that reaches it."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, f"smtp://127.0.0.1:{port}?timeout=5"
    finally:
        controller.stop()


def body_text(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


# -- HTTP ------------------------------------------------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request; (status, parsed JSON body or text)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def post_json(
    url: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    status, answer = http("POST", url, raw, {"content-type": "application/json", **(headers or {})})
    return status, answer, raw


def answers(url: str) -> bool:
    """True once a GET of ``url`` answers 200."""
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


def telegram_update(
    user_id: int, text: str, update_id: int, first_name: str = "Ana"
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id * 10,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "chat": {"id": user_id, "type": "private", "first_name": first_name},
            "date": 1714564800,
            "text": text,
        },
    }


def whatsapp_webhook(wa_id: str, text: str, message_id: str, name: str = "Bo") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA-1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "PN-1",
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": message_id,
                                    "timestamp": "1714564800",
                                    "type": "text",
                                    "text": {"body": text},
                                },
                            ],
                        },
                    }
                ],
            }
        ],
    }
