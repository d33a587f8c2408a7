"""The broadcast example's handlers: plan a broadcast (one item per recipient), deliver one
message, summarise the deliveries. The routes between them are in queues.yaml."""

from __future__ import annotations

from typing import Any

from cortexflow import UnrecoverableError


def plan(data: dict[str, Any]) -> dict[str, Any]:
    """{"text", "users": [...]} -> the recipients, which the route fans out."""
    return {"recipients": [{"user": u, "text": data["text"]} for u in data["users"]]}


def deliver(data: dict[str, Any]) -> dict[str, Any]:
    if data["user"].startswith("blocked"):
        raise UnrecoverableError(f"{data['user']} blocked the sender")
    return {"delivered": data["user"]}


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """The join job: every delivery's outcome (docs/pipelines.md, Joins)."""
    failed = sorted(r["id"] for r in data["results"] if r["state"] != "completed")
    return {"sent": data["completed"], "failed": failed, "of": data["total"]}
