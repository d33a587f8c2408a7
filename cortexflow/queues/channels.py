"""Incoming webhooks, per channel: check who sent them, then turn them into chat messages.

A channel is two small functions: ``verify(secret, headers, raw_body)`` raises
``SignatureError`` when the request was not signed with the secret, and ``parse(body)`` returns
the ``InboundMessage`` objects in the webhook (a webhook may carry none: delivery receipts,
stickers, ... are skipped).

- ``whatsapp``: Meta's Cloud API shape, ``entry[].changes[].value.messages[]``; signed with
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``.
- ``telegram``: a Bot API ``Update``; the secret token given to ``setWebhook`` comes back in
  ``X-Telegram-Bot-Api-Secret-Token``. That header is the secret itself, so an API service
  should not store it in a job: it may pass ``X-Telegram-Bot-Api-Secret-Token-Sha256`` (the
  hex SHA-256 of the header) instead, which is checked the same way.
- ``webchat``: your own site's widget, ``{sessionId or userId, text}``; it has no signature:
  authenticate it in your API service, which should set ``userId`` to the authenticated user.
  Nothing else of the body reaches the message (an ``email`` in it is ignored: addresses come
  from the API service's ``metadata``, never from a webhook body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cortexflow.errors import UnrecoverableError


class SignatureError(UnrecoverableError):
    """The webhook's signature is missing or wrong: it is refused, never retried."""


class MalformedWebhookError(UnrecoverableError):
    """The webhook's body does not have the channel's shape: retrying cannot help."""


@dataclass(frozen=True)
class InboundMessage:
    """One chat message, whatever channel it came from (a message-processing payload)."""

    message_id: str
    channel: str
    user_id: str
    content: str
    timestamp: str  # ISO 8601, UTC
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "channelType": self.channel,
            "userId": self.user_id,
            "content": self.content,
            "timestamp": self.timestamp,
            "metadata": self.metadata,
        }


Verify = Callable[[str, Mapping[str, str], bytes], None]
Parse = Callable[[Mapping[str, Any]], list[InboundMessage]]


@dataclass(frozen=True)
class Channel:
    name: str
    secret_env: str | None  # environment variable holding the secret; None: no signature
    verify: Verify
    parse: Parse
    needs_raw_body: bool = False


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """A request header, case-insensitively (a list value, as some frameworks give, -> first)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            if isinstance(value, list):
                return str(value[0]) if value else None
            return str(value)
    return None


def iso_from_epoch(seconds: object) -> str:
    try:
        return datetime.fromtimestamp(float(str(seconds)), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        raise MalformedWebhookError(f"timestamp {seconds!r} is not epoch seconds") from None


# -- whatsapp ------------------------------------------------------------------------------------


def verify_whatsapp(secret: str, headers: Mapping[str, str], raw_body: bytes) -> None:
    given = header(headers, "X-Hub-Signature-256") or ""
    expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignatureError("whatsapp: X-Hub-Signature-256 is missing or does not match the body")


def _whatsapp_text(message: Mapping[str, Any]) -> str | None:
    kind = message.get("type")
    if kind == "text":
        return str(message.get("text", {}).get("body", ""))
    if kind == "button":
        return str(message.get("button", {}).get("text", ""))
    if kind == "interactive":
        reply = message.get("interactive", {})
        chosen = reply.get("button_reply") or reply.get("list_reply") or {}
        return str(chosen.get("title", ""))
    return None  # image, audio, location, reaction...: not text for the orchestrator


def parse_whatsapp(body: Mapping[str, Any]) -> list[InboundMessage]:
    if body.get("object") not in (None, "whatsapp_business_account"):
        raise MalformedWebhookError(f"whatsapp: unexpected object {body.get('object')!r}")
    found = []
    for value in _whatsapp_values(body):
        names = {
            c.get("wa_id"): c.get("profile", {}).get("name") for c in value.get("contacts", [])
        }
        phone_number_id = value.get("metadata", {}).get("phone_number_id")
        for message in value.get("messages", []):  # "statuses" (receipts) carry no messages
            text = _whatsapp_text(message)
            if text is None or "id" not in message or "from" not in message:
                continue
            sender = str(message["from"])
            found.append(
                InboundMessage(
                    message_id=str(message["id"]),
                    channel="whatsapp",
                    user_id=sender,
                    content=text,
                    timestamp=iso_from_epoch(message.get("timestamp", 0)),
                    metadata=_compact(name=names.get(sender), phoneNumberId=phone_number_id),
                )
            )
    return found


def _whatsapp_values(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise MalformedWebhookError("whatsapp: `entry` is not a list")
    for entry in entries:
        for change in entry.get("changes", []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict):
                yield value


# -- telegram ------------------------------------------------------------------------------------


TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
TELEGRAM_DIGEST_HEADER = "X-Telegram-Bot-Api-Secret-Token-Sha256"


def telegram_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def verify_telegram(secret: str, headers: Mapping[str, str], raw_body: bytes) -> None:
    digest = header(headers, TELEGRAM_DIGEST_HEADER)
    if digest is not None:
        if hmac.compare_digest(digest.encode(), telegram_digest(secret).encode()):
            return
    else:
        given = header(headers, TELEGRAM_SECRET_HEADER) or ""
        if hmac.compare_digest(given.encode(), secret.encode()):
            return
    raise SignatureError("telegram: X-Telegram-Bot-Api-Secret-Token is missing or wrong")


def parse_telegram(body: Mapping[str, Any]) -> list[InboundMessage]:
    if "update_id" not in body:
        raise MalformedWebhookError("telegram: not a Bot API Update (no update_id)")
    message = body.get("message") or body.get("edited_message")
    if not isinstance(message, dict):
        return []  # callback queries, channel posts, member updates...: nothing to answer
    text = message.get("text", message.get("caption"))
    sender, chat = message.get("from") or {}, message.get("chat") or {}
    if text is None or "id" not in sender or "id" not in chat:
        return []
    return [
        InboundMessage(
            message_id=f"tg-{chat['id']}-{message.get('message_id', body['update_id'])}",
            channel="telegram",
            user_id=str(sender["id"]),
            content=str(text),
            timestamp=iso_from_epoch(message.get("date", 0)),
            metadata=_compact(
                chatId=chat["id"],
                name=sender.get("first_name"),
                username=sender.get("username"),
                languageCode=sender.get("language_code"),
            ),
        )
    ]


# -- webchat -------------------------------------------------------------------------------------


def no_signature(secret: str, headers: Mapping[str, str], raw_body: bytes) -> None:
    """Channels without a signature: authenticate them where the request arrives."""


def parse_webchat(body: Mapping[str, Any]) -> list[InboundMessage]:
    user = body.get("userId") or body.get("sessionId")
    text = body.get("text")
    if not isinstance(user, str) or not user or not isinstance(text, str):
        raise MalformedWebhookError("webchat: expected {sessionId or userId, text} as strings")
    stamp = body.get("timestamp")
    return [
        InboundMessage(
            message_id=str(body.get("messageId") or ""),  # "" -> the webhook's id is used
            channel="webchat",
            user_id=user,
            content=text,
            timestamp=stamp if isinstance(stamp, str) else datetime.now(UTC).isoformat(),
            metadata=_compact(sessionId=body.get("sessionId")),
        )
    ]


CHANNELS: Mapping[str, Channel] = {
    "whatsapp": Channel(
        "whatsapp", "WHATSAPP_APP_SECRET", verify_whatsapp, parse_whatsapp, needs_raw_body=True
    ),
    "telegram": Channel("telegram", "TELEGRAM_WEBHOOK_SECRET", verify_telegram, parse_telegram),
    "webchat": Channel("webchat", None, no_signature, parse_webchat),
}


def _compact(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
