"""The five shipped queues, as constants."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    """Names of the shipped queues; members are str (``QueueName.ANALYTICS == "analytics"``).

    Queues you declare yourself in queues.yaml are addressed by their name as a ``str``.
    """

    MESSAGE_PROCESSING = "message-processing"
    WEBHOOK_PROCESSING = "webhook-processing"
    EMAIL_SENDING = "email-sending"
    ANALYTICS = "analytics"
    NOTIFICATIONS = "notifications"
