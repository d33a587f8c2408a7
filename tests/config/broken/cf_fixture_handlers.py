"""Handlers that import fine, for the broken-config fixtures (the config around them is broken)."""

from typing import Any


async def handle(data: dict[str, Any], job: Any = None) -> dict[str, Any]:
    return {"ok": True}


class Worker:
    async def process(self, job: Any) -> dict[str, Any]:
        return {"ok": True}


class NotAWorker:
    pass


NOT_CALLABLE = 42
