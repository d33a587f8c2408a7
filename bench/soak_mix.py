"""The handler of bench/soak.py's synthetic queue (``--mix``), by the job's ``kind``:

- ``ok`` and ``delayed`` (added with a delay) complete at once;
- ``retry`` fails its first run and completes on the second;
- ``fail`` fails for good (UnrecoverableError: no retry, to the dead-letter queue).
"""

from __future__ import annotations

from typing import Any

from cortexflow.errors import UnrecoverableError
from cortexflow.worker.context import JobContext


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    kind = data.get("kind")
    if kind == "retry" and job.attempt == 1:
        raise RuntimeError("the first run of a `retry` job fails")
    if kind == "fail":
        raise UnrecoverableError("a `fail` job fails for good")
    return {"kind": kind}
