"""Small helpers the handlers share: follow-up job ids, and data they keep in Redis."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from typing import Any

from redis.exceptions import WatchError

from cortexflow.engine.cluster import ClusterClient, node_client
from cortexflow.engine.payload import JOB_ID_FORBIDDEN
from cortexflow.worker.context import JobContext

PREFIX_ENV = "CORTEXFLOW_DATA_PREFIX"
MAX_ID = 256


def job_id(*parts: str) -> str:
    """A job id made of ``parts`` (what a job id may not hold -- whitespace, ':', '/', control
    and bidi characters -- replaced by '_'; long ones shortened by a hash).

    Follow-up jobs get ids derived from the job that adds them, so a retried run adds nothing
    twice: adding an id that exists adds nothing.
    """
    text = JOB_ID_FORBIDDEN.sub("_", "-".join(parts))
    if text in ("", ".", ".."):
        text = text.replace(".", "_") or "_"
    if len(text) <= MAX_ID:
        return text
    return text[: MAX_ID - 41] + "-" + hashlib.sha1(text.encode()).hexdigest()  # noqa: S324


def data_prefix() -> str:
    """Prefix of the keys the handlers keep (analytics, in-app inboxes): $CORTEXFLOW_DATA_PREFIX
    or ``cortexflow``. The engine's own keys are ``{prefix:queue}:...``; these never clash."""
    return os.environ.get(PREFIX_ENV) or "cortexflow"


async def write_once(job: JobContext, marker: str, writes: Callable[[Any], None]) -> bool:
    """Run ``writes(pipeline)`` in one MULTI/EXEC together with ``SET marker`` unless the marker
    already exists; False (nothing written) if it does. A job that is run again after a crash
    or a lost acknowledgement so counts once. All keys must share ``marker``'s hash tag.

    The marker lives only as long as a re-run of ``job`` can happen: its TTL is the job's
    ``rerun_window`` and it is deleted once the job's completion is recorded. A job that an
    operator retries after that (``cortexflow retry``) writes again: a retry is a new delivery.

    On a Cluster the transaction runs on the plain client of the node serving that slot:
    redis-py's cluster pipeline never sends the WATCH (docs/cluster.md)."""
    client = job.redis
    job.forget_on_completion(marker)  # also when it exists: an earlier run of this job wrote it
    if isinstance(client, ClusterClient):
        client = await node_client(client, marker)
    async with client.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(marker)
            if await pipe.exists(marker):
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(marker, 1, ex=max(1, math.ceil(job.rerun_window)))
            writes(pipe)
            await pipe.execute()
        except WatchError:  # another run of the same job wrote it just now
            return False
    return True
