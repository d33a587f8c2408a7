"""Handler of `email-sending`: deliver an email through the SMTP server of ``$SMTP_URL``.

Payload: ``{to, from?, subject, body?, html?}`` (``to`` a string or a list). With both ``body``
and ``html`` the email is multipart/alternative. Transient failures are retried by the queue's
backoff; a 5xx reply fails the job at once (see ``cortexflow.queues.smtp``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from cortexflow.errors import UnrecoverableError
from cortexflow.queues.smtp import SmtpSettings, build_message, send
from cortexflow.worker.context import JobContext


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    url = os.environ.get("SMTP_URL")
    if not url:
        raise UnrecoverableError(
            "SMTP_URL is not set: set it for the email-sending workers (e.g. "
            "smtp://user:password@mail.example.com:587?starttls=1), then "
            "`cortexflow retry email-sending --all`"
        )
    settings = SmtpSettings.from_url(url, default_from=os.environ.get("SMTP_FROM"))
    msg = build_message(data, settings.sender, job.id)
    refused = await asyncio.to_thread(send, settings, msg)
    if refused:
        await job.log(f"refused by the server: {refused}")
    return {"messageId": msg["Message-ID"], "to": msg["To"], "refused": refused}
