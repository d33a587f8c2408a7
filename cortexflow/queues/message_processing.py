"""Handler of `message-processing`: ask the orchestrator for a reply to a chat message, and
return the notification that sends the reply to the user.

The reply goes by email when the message's metadata has the user's ``email`` (your API
service can add it when it queues the webhook), in-app otherwise. Each processed message is
also tracked on `analytics` (event ``message_processed``, with the reply's tokens and cost).
queues.yaml's `next:` routes queue both from the result (``notify`` on `notifications` as
``reply-<id>``, ``track`` on `analytics` as ``track-<id>``), with the completion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cortexflow.queues import orchestrator
from cortexflow.queues.common import job_id
from cortexflow.queues.orchestrator import Message, Reply
from cortexflow.worker.context import JobContext


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    message = Message.from_payload(data)
    reply = await orchestrator.ask(orchestrator.configured(job.settings), message)
    track = {
        "event": "message_processed",
        "userId": message.user_id,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"tokens": reply.tokens, "cost": reply.cost, "channel": message.channel},
    }
    return {
        "reply": reply.text,
        "notification": job_id("reply", job.id),  # the id the route gives it
        "notify": notification_for(message, reply),
        "track": track,
    }


def notification_for(message: Message, reply: Reply) -> dict[str, Any]:
    email = message.metadata.get("email")
    note: dict[str, Any] = {
        "userId": message.user_id,
        "type": "email" if email else "in-app",
        "title": f"Re: your {message.channel} message",
        "message": reply.text,
        "data": {"inReplyTo": message.message_id, "channelType": message.channel},
    }
    if email:
        note["email"] = email
    return note
