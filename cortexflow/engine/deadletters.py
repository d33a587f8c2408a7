"""Copying jobs that failed for good to their queue's dead-letter queue.

The script that fails a job writes an entry to the queue's outbox (``{p:q}:dlq``) in the same
call; a worker of the queue copies each entry to the dead-letter queue and then removes it. The
two queues live in different Cluster slots, so the copy cannot be one script: the outbox makes
it crash-safe, and the dead-letter job's id makes a repeated copy add nothing.

The copier cannot wedge (engine/outbox.py): an entry that cannot be copied (unreadable, refused
by the target queue) is set aside to ``{p:q}:dlq:failed``, counted in stats as
``deadLettersNotCopied``.
"""

from __future__ import annotations

import json
from typing import Any

from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.outbox import OutboxCopier
from cortexflow.engine.payload import MAX_PAYLOAD_BYTES
from cortexflow.engine.queue import QueueEngine

MAX_ID = 256


def dead_letter_id(job_id: str, letter: int) -> str:
    """The dead-letter job's id: the failed job's id for its first dead letter, ``<id>-<n>``
    for the n-th (a job retried by an operator that fails again), within the 256-character
    id limit."""
    if letter <= 1:
        return job_id
    suffix = f"-{letter}"
    return job_id[: MAX_ID - len(suffix)] + suffix


def envelope(queue: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The dead-letter job's data: where the job came from and why it failed. An envelope
    that would exceed the payload limit goes without the job's data (the failed job keeps it,
    as long as its retention does)."""
    env = {
        "queue": queue,
        "id": entry["id"],
        "name": entry.get("name", ""),
        "data": entry.get("data"),
        "error": entry.get("error", ""),
        "stacktrace": entry.get("stacktrace", ""),
        "attemptsMade": entry.get("attemptsMade", 0),
    }
    size = len(json.dumps(env, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_PAYLOAD_BYTES:
        env["data"] = None
        env["dataOmitted"] = (
            f"the envelope was {size:,} bytes, over the {MAX_PAYLOAD_BYTES:,} byte limit: the "
            f"job's data stays with job {entry['id']} of queue {queue}"
        )
    return env


class DeadLetterCopier(OutboxCopier):
    """Copies one queue's outbox to its dead-letter queue."""

    what = "a dead letter"

    def __init__(self, source: QueueEngine, target: QueueEngine) -> None:
        super().__init__(source, source.keys.dlq_outbox, source.keys.dlq_failed)
        self.target = target

    def where(self) -> str:
        return self.target.name

    async def _copy_one(self, raw: bytes) -> None:
        entry = json.loads(raw)
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError("an outbox entry is a JSON object with an id")
        if entry.get("stalled"):  # written by an older version: the job hash has the rest
            entry = await self._from_job(entry["id"])
        queue = entry.get("queue", self.source.name)  # "queue": an older version's envelope
        env = envelope(str(queue), entry)
        letter = entry.get("letter", 1)
        name = env["name"] if isinstance(env["name"], str) and env["name"] else "dead-letter"
        opts = JobOptions(job_id=dead_letter_id(env["id"], int(letter)))
        await self.target.add_bulk([(name, env, opts)], validate=False)

    async def _from_job(self, job_id: str) -> dict[str, Any]:
        job = await self.source.get_job(job_id)
        if job is None:
            return {"id": job_id, "name": "unknown", "data": None, "error": "stalled"}
        return {
            "id": job.id,
            "name": job.name,
            "data": job.data,
            "error": job.error or "stalled",
            "attemptsMade": job.attempts_made,
        }
