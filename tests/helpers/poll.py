"""Wait for a condition by polling it with a deadline, never by sleeping and hoping.

``wait_for`` polls a plain callable from test code; ``wait_for_async`` awaits an async one from
inside an event loop (a blocking poll there would stall the very workers being waited on).
Both return the condition's first truthy value and fail with ``message`` at the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

Message = str | Callable[[], str] | None


def _failure(condition: object, timeout: float, message: Message) -> AssertionError:
    what = message() if callable(message) else message
    return AssertionError(f"not reached within {timeout}s: {what or condition}")


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: Message = None,
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail with ``message`` past ``timeout``.

    ``message`` may be a callable, evaluated only on failure (e.g. to show a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failure(condition, timeout, message)
        time.sleep(interval)


async def wait_for_async(
    condition: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: Message = None,
) -> Any:
    """``wait_for`` for an async condition, sleeping on the event loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _failure(condition, timeout, message)
        await asyncio.sleep(interval)
