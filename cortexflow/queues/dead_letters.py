"""dead-letters: where jobs that failed for good end up (a dead-letter queue).

Each job's data is the envelope the engine writes: ``{queue, id, name, data, error, stacktrace,
attemptsMade}``. This handler makes the failure loud (one warning line in `cortexflow up`'s
output, where an alert can watch for it) and keeps the envelope as the job's result, so
`cortexflow jobs dead-letters --state completed` lists every failure for 30 days. To replay one,
enqueue its ``data`` on its ``queue`` again (`cortexflow job dead-letters ID --json`).
"""

from __future__ import annotations

import logging
from typing import Any

from cortexflow.worker.context import JobContext

log = logging.getLogger("cortexflow.dead_letters")


async def handle(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    log.warning(
        "dead letter: %s job %s (%s) failed for good after %s run(s): %s",
        data.get("queue"),
        data.get("id"),
        data.get("name"),
        data.get("attemptsMade"),
        data.get("error"),
    )
    return {"queue": data.get("queue"), "id": data.get("id"), "error": data.get("error")}
