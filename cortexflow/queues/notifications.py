"""Handler of `notifications`: deliver a notification to a user, by its ``type``.

- ``email``: the email (``email`` in the result) that queues.yaml's `next:` route queues on
  email-sending as ``email-<id>``, to ``email`` (the user's address, required for this type);
- ``webhook``: a JSON POST to ``url`` (one deadline of ``$NOTIFY_WEBHOOK_TIMEOUT`` seconds,
  default 10, for all of it); no connection, timeouts, 5xx, 408 and 429 are retried, a 3xx
  (redirects are not followed) or any other 4xx fails at once. Internal addresses (loopback,
  private, link-local, metadata) are refused unless the queue's ``settings.webhook_allow``
  lists them (see ``cortexflow.queues.outbound``);
- ``in-app``: appended to the user's inbox, a Redis stream ``{prefix}:inbox:{userId}`` capped at
  about 1,000 entries; read it with ``read_inbox(redis, user_id)``.
"""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from typing import Any

from cortexflow.engine.connection import Client
from cortexflow.errors import UnrecoverableError
from cortexflow.queues.common import data_prefix, job_id, write_once
from cortexflow.queues.smtp import single_address
from cortexflow.worker.context import JobContext

INBOX_MAXLEN = 1000


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    kind = data["type"]
    if kind == "email":
        return await by_email(data, job)
    if kind == "webhook":
        return await by_webhook(data, job)
    if kind == "in-app":
        return await in_app(data, job)
    raise UnrecoverableError(f"unknown notification type {kind!r}: email, webhook or in-app")


async def by_email(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    address = data.get("email")
    if not address:
        raise UnrecoverableError(f"no email address for user {data['userId']!r}: give `email`")
    single_address(address, "`email`")  # "a@b.c, d@e.f" would be two recipients
    title = data.get("title") or "Notification"
    email = {
        "to": address,
        "subject": title,
        "body": data["message"],
        "html": f"<h3>{html.escape(title)}</h3><p>{html.escape(data['message'])}</p>",
    }
    return {"type": "email", "emailJob": job_id("email", job.id), "email": email}


async def by_webhook(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    url = data.get("url") or ""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise UnrecoverableError("a webhook notification needs an http(s) `url`")
    body = {key: data.get(key) for key in ("userId", "type", "title", "message", "data")}
    body["notificationId"] = job.id
    timeout = float(os.environ.get("NOTIFY_WEBHOOK_TIMEOUT") or 10)
    # Here, not at the top: aiohttp costs each worker process ~9 MiB before a first webhook.
    from cortexflow.queues import outbound

    allow = outbound.Allowlist.from_settings(job.settings)
    status = await outbound.post_json(url, body, timeout=timeout, allow=allow)
    return {"type": "webhook", "status": status}


def inbox_key(user_id: str, prefix: str | None = None) -> str:
    return f"{prefix or data_prefix()}:inbox:{{{user_id}}}"


async def in_app(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    key = inbox_key(data["userId"])
    entry = {
        "notificationId": job.id,
        "title": data.get("title") or "",
        "message": data["message"],
        "data": json.dumps(data.get("data") or {}),
        "createdAt": datetime.now(UTC).isoformat(),
    }

    def writes(pipe: Any) -> None:
        pipe.xadd(key, entry, maxlen=INBOX_MAXLEN, approximate=True)

    added = await write_once(job, f"{key}:sent:{job.id}", writes)
    return {"type": "in-app", "inbox": key, "added": added}


async def read_inbox(
    client: Client, user_id: str, count: int = 50, prefix: str | None = None
) -> list[dict[str, Any]]:
    """The user's newest ``count`` in-app notifications, newest first (each with its ``id``)."""
    entries: list[tuple[bytes | str, dict[bytes | str, bytes | str]]]
    entries = await client.xrevrange(inbox_key(user_id, prefix), count=count)  # type: ignore[assignment]
    out = []
    for entry_id, fields in entries:
        item: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
        item["data"] = json.loads(item.get("data") or "{}")
        item["id"] = _text(entry_id)
        out.append(item)
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
