"""Handler of `message-processing`: ask the orchestrator for a reply to a chat message, and
send the reply to the user as a notification.

The reply goes by email when the message's metadata has the user's ``email`` (your API
service can add it when it queues the webhook), in-app otherwise. Each processed message is
also tracked on `analytics` (event ``message_processed``, with the reply's tokens and cost).
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
    notification = await job.add_job(
        "notifications",
        "send-notification",
        notification_for(message, reply),
        job_id=job_id("reply", job.id),
    )
    await job.add_job(
        "analytics",
        "track-event",
        {
            "event": "message_processed",
            "userId": message.user_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"tokens": reply.tokens, "cost": reply.cost, "channel": message.channel},
        },
        job_id=job_id("track", job.id),
    )
    return {"reply": reply.text, "notification": notification}


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
