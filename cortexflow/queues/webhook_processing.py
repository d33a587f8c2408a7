"""Handler of `webhook-processing`: check a webhook's signature, normalise it per channel, and
return each chat message in it (``payloads``), which queues.yaml's `next:` route queues on
`message-processing`, one job per message, id ``<channelType>-<messageId>``.

Payload: ``{webhookId, channel, payload, rawBody?, headers?, metadata?, receivedAt?}``.
``rawBody`` is the request body exactly as received (text): a WhatsApp signature is an HMAC of
those bytes, which re-serialising ``payload`` would not reproduce. When it is present it is what
gets verified *and* parsed. ``metadata`` is what your API service knows about the sender (e.g.
``{"email": ...}``); it is added to every message.

Secrets come from the environment (``WHATSAPP_APP_SECRET``, ``TELEGRAM_WEBHOOK_SECRET``). When
one is unset, that channel's webhooks are accepted unverified and a warning is logged once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

from cortexflow.queues.channels import (
    CHANNELS,
    Channel,
    InboundMessage,
    MalformedWebhookError,
    SignatureError,
)
from cortexflow.queues.common import job_id
from cortexflow.worker.context import JobContext

log = logging.getLogger(__name__)


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    channel = CHANNELS.get(data["channel"])
    if channel is None:
        raise MalformedWebhookError(f"no such channel {data['channel']!r}; known: {list(CHANNELS)}")
    raw: str | None = data.get("rawBody")
    verified = await verify(channel, data.get("headers") or {}, raw, job)
    messages = channel.parse(body_of(data))
    payloads = [message_payload(message, data, n) for n, message in enumerate(messages)]
    # The route's id, [/channelType, /messageId]: the same message (a retried webhook, a
    # redelivery) is queued once. `messages` lists those ids.
    queued = [job_id(p["channelType"], p["messageId"]) for p in payloads]
    return {"channel": channel.name, "verified": verified, "messages": queued, "payloads": payloads}


async def verify(
    channel: Channel, headers: dict[str, Any], raw: str | None, job: JobContext
) -> bool:
    """True if the signature was checked; SignatureError if it is wrong; False if no secret."""
    if channel.secret_env is None:
        return False
    secret = os.environ.get(channel.secret_env)
    if not secret:
        warn_unverified(channel.name, channel.secret_env)
        await job.log(f"{channel.name}: not verified ({channel.secret_env} is not set)")
        return False
    if channel.needs_raw_body and raw is None:
        raise SignatureError(
            f"{channel.name}: the signature covers the exact request body; enqueue it as rawBody"
        )
    channel.verify(secret, headers, (raw or "").encode("utf-8"))
    return True


@functools.cache
def warn_unverified(channel: str, env: str) -> None:
    log.warning("%s webhooks are NOT verified: set %s to check their signature", channel, env)


def body_of(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("rawBody") is None:
        body = data.get("payload")
    else:
        try:
            body = json.loads(data["rawBody"])
        except ValueError as exc:
            raise MalformedWebhookError(f"rawBody is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedWebhookError("the webhook body is not a JSON object")
    return body


def message_payload(message: InboundMessage, data: dict[str, Any], n: int) -> dict[str, Any]:
    payload = message.to_payload()
    payload["messageId"] = payload["messageId"] or f"{data['webhookId']}-{n}"
    payload["metadata"] = {**payload["metadata"], **(data.get("metadata") or {})}
    return payload
