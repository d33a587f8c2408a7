"""Small helpers the handlers share: follow-up job ids, and data they keep in Redis."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from redis.commands.core import DataAccessCommands

from cortexflow.engine.routes import derived_id
from cortexflow.worker.context import JobContext

PREFIX_ENV = "CORTEXFLOW_DATA_PREFIX"


def job_id(*parts: str) -> str:
    """A job id made of ``parts`` (what a job id may not hold -- whitespace, ':', '/', control
    and bidi characters -- replaced by '_'; long ones shortened by a hash).

    Follow-up jobs get ids derived from the job that adds them, so a retried run adds nothing
    twice: adding an id that exists adds nothing. A `next:` route's ``id`` parts make the same
    id (one function, ``engine.routes.derived_id``).
    """
    return derived_id(*parts)


def data_prefix() -> str:
    """Prefix of the keys the handlers keep (analytics, in-app inboxes): $CORTEXFLOW_DATA_PREFIX
    or ``cortexflow``. The engine's own keys are ``{prefix:queue}:...``; these never clash."""
    return os.environ.get(PREFIX_ENV) or "cortexflow"


# SET the marker unless it exists, then run the recorded writes: ARGV = ttl, then per command
# its length and its words. One round trip, atomic like MULTI/EXEC (and, like it, no rollback).
WRITE_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


class Writes(DataAccessCommands):
    """What ``writes(pipe)`` is given: redis-py's data commands (``pipe.xadd(...)``,
    ``pipe.hincrby(...)``, ``pipe.expire(...)``), recorded for the write_once script."""

    _event_dispatcher: Any = None  # the commands' protocol declares it; nothing dispatches here

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.commands.append(args)


async def write_once(job: JobContext, marker: str, writes: Callable[[Any], None]) -> bool:
    """Run ``writes(pipe)`` together with ``SET marker`` unless the marker already exists, in
    one script call (one round trip, atomic); False (nothing written) if it does. A job that
    is run again after a crash or a lost acknowledgement so counts once. All keys must share
    ``marker``'s hash tag (one Cluster slot: the script is routed by the marker).

    The marker lives only as long as a re-run of ``job`` can happen: its TTL is the job's
    ``rerun_window`` and it is deleted once the job's completion is recorded. A job that an
    operator retries after that (``cortexflow retry``) writes again: a retry is a new delivery."""
    client = job.redis
    job.forget_on_completion(marker)  # also when it exists: an earlier run of this job wrote it
    recorded = Writes()
    writes(recorded)
    args: list[Any] = [max(1, math.ceil(job.rerun_window))]
    for command in recorded.commands:
        args += [len(command), *command]
    # EVALSHA, and EVAL once after a NOSCRIPT (a restarted or new server)
    return bool(await client.register_script(WRITE_ONCE)(keys=[marker], args=args))
