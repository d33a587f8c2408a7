"""Handler of `email-sending`: deliver an email through the SMTP server of ``$SMTP_URL``.

Payload: ``{to, from?, subject, body?, html?}`` (``to`` one address, or a list of addresses,
each a single address). With both ``body`` and ``html`` the email is multipart/alternative.
Transient failures are retried by the queue's backoff; a 5xx reply fails the job at once (see
``cortexflow.queues.smtp``).

Senders: the queue's ``settings: {allowed_senders: [...]}`` lists the ``from`` addresses a
payload may use (an entry ``@example.com`` allows the whole domain); any other is refused. The
default sender (``from=`` of SMTP_URL, or ``$SMTP_FROM``) is always allowed. Without the list
any sender is accepted, as in the original service, and the worker warns once.

``SMTP_URL`` is checked when the worker imports this module, so an unknown option or a login
without TLS stops the worker at start (its queue turns FATAL with the reason), not at the
first email.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from cortexflow.errors import UnrecoverableError
from cortexflow.queues.smtp import SmtpSettings, build_message, send
from cortexflow.worker.context import JobContext

log = logging.getLogger(__name__)


def settings_from_env() -> SmtpSettings | None:
    url = os.environ.get("SMTP_URL")
    if not url:
        return None
    return SmtpSettings.from_url(url, default_from=os.environ.get("SMTP_FROM"))


settings_from_env()  # at import, i.e. at the worker's start: a bad SMTP_URL stops it there


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    settings = settings_from_env()
    if settings is None:
        raise UnrecoverableError(
            "SMTP_URL is not set: set it for the email-sending workers (e.g. "
            "smtp://user:password@mail.example.com:587?starttls=1), then "
            "`cortexflow retry email-sending --all`"
        )
    check_sender(data.get("from"), settings.sender, job.settings, job.queue)
    msg = build_message(data, settings.sender, job.id)
    refused = await asyncio.to_thread(send, settings, msg)
    if refused:
        await job.log(f"refused by the server: {refused}")
    return {"messageId": msg["Message-ID"], "to": msg["To"], "refused": refused}


def check_sender(
    sender: object, default: str, settings: Mapping[str, Any], queue: str = "email-sending"
) -> None:
    """UnrecoverableError when ``sender`` is not allowed by ``settings.allowed_senders``."""
    if sender is None or sender == default:
        return
    allowed = settings.get("allowed_senders")
    if allowed is None:
        warn_any_sender(queue)
        return
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        raise UnrecoverableError(f"{queue}: settings.allowed_senders must be a list of addresses")
    address = str(sender).strip().lower()
    domain = "@" + address.rpartition("@")[2]
    entries = {a.strip().lower() for a in allowed}
    if address not in entries and domain not in entries:
        raise UnrecoverableError(
            f"sender {sender!r} is not in the allowed_senders of queue {queue!r}; add it "
            "there, or leave `from` out to use the default sender"
        )


@functools.cache
def warn_any_sender(queue: str) -> None:
    log.warning(
        "%s: any `from` address is accepted; list the allowed ones in the queue's "
        "settings: {allowed_senders: [...]}",
        queue,
    )
