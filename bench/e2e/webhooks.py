"""Realistic webhook-processing jobs: a WhatsApp Cloud API delivery as received (``rawBody``,
signed with the app secret in X-Hub-Signature-256), with the sender's email in ``metadata`` so
the reply goes out by email. One user per webhook: the email address tells the webhooks apart."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

APP_SECRET = "bench-whatsapp-app-secret"
TEXTS = (
    "Hello! What are your opening hours on Friday?",
    "How much do your plans cost per month?",
    "I need help with my order, can a human agent call me?",
    "thanks, that was quick",
)


def address(phase: str, i: int) -> str:
    return f"user-{phase}-{i}@example.test"


def delivery(wa_id: str, text: str, message_id: str) -> dict[str, Any]:
    message = {"from": wa_id, "id": message_id, "timestamp": "1714564800", "type": "text"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PN-1"},
        "contacts": [{"profile": {"name": "Bo"}, "wa_id": wa_id}],
        "messages": [{**message, "text": {"body": text}}],
    }
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA-1", "changes": [change]}]}


def webhook_job(phase: str, i: int) -> dict[str, Any]:
    """The data of one webhook-processing job."""
    wa_id = f"34600{i:06d}"
    raw = json.dumps(delivery(wa_id, TEXTS[i % len(TEXTS)], f"wamid.{phase}.{i}"))
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return {
        "webhookId": f"wh-{phase}-{i}",
        "channel": "whatsapp",
        "rawBody": raw,
        "headers": {"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
        "metadata": {"email": address(phase, i)},
    }
