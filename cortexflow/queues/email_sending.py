"""Handler of the `email-sending` queue (a placeholder until the real one lands)."""

from __future__ import annotations

from typing import Any


async def handle(data: dict[str, Any], job: Any = None) -> dict[str, Any]:
    return {"status": "sent", "to": data.get("to")}
