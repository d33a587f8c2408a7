"""The supervisor's own background tasks are never silently gone (supervisor/background.py):
one that ends on its own is logged with its cause and started again, at a bounded rate."""

from __future__ import annotations

import asyncio
import io

from cortexflow.supervisor.background import RESTART_EVERY, Background
from cortexflow.supervisor.logmux import LogSink


def test_a_task_that_dies_is_logged_and_restarted_at_a_bounded_rate() -> None:
    err = io.StringIO()
    sink = LogSink(out=io.StringIO(), err=err)
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("publisher bug")
        await asyncio.sleep(3600)

    async def main() -> None:
        background = Background(sink)
        background.start("status publisher", flaky)
        await asyncio.sleep(0.05)
        background.check(now=100.0)
        await asyncio.sleep(0.05)
        assert len(runs) == 2
        assert "the status publisher ended unexpectedly (RuntimeError('publisher bug'))" in (
            err.getvalue()
        )
        # A second death within RESTART_EVERY waits for the next allowed check.
        background._tasks["status publisher"].cancel()
        await asyncio.sleep(0.05)
        background.check(now=100.0 + RESTART_EVERY / 2)
        await asyncio.sleep(0.05)
        assert len(runs) == 2
        background.check(now=100.0 + RESTART_EVERY)
        await asyncio.sleep(0.05)
        assert len(runs) == 3
        background._tasks["status publisher"].cancel()
        await background.finish("status publisher")

    asyncio.run(main())
