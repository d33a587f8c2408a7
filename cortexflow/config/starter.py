"""What `cortexflow init` writes: a queues.yaml that validates as is, and its handler."""

from __future__ import annotations

from cortexflow.config.schema import SCHEMA_URL

_STARTER = """\
# yaml-language-server: $schema={schema_url}
# cortexflow queues: `cortexflow validate` checks this file, `cortexflow up` runs it.
version: 1

# redis:
#   url: ${{REDIS_URL:-}}      # REDIS_URL unset or empty: the embedded server of this folder
#   prefix: cortexflow

defaults:                      # applies to every queue; a queue's own keys win
  attempts: 3                  # total runs, the first included
  backoff: {{type: exponential, delay: 1s, max: 10m, jitter: 0.2}}
  timeout: 5m

queues:
  default:
    handler: tasks:handle      # "package.module:function", found beside this file first
    concurrency: 10            # jobs at once per worker process
    # processes: 1
    # priority: 0              # higher runs first
    # rate_limit: {{max: 100, duration: 1s}}
    # group: {{key: /customerId, concurrency: 1}}  # one customer's jobs at a time, in order
    # retention: {{completed: {{age: 1h, count: 1000}}, failed: {{age: 7d, count: 10000}}}}
    # payload_schema: schemas/default.json
    # dead_letter: failed
"""

STARTER_TASKS = '''\
"""Handlers of the queues in queues.yaml."""

from typing import Any


async def handle(data: dict[str, Any], job: Any = None) -> dict[str, Any]:
    """Process one job of the `default` queue; the return value is the job's result."""
    return {"ok": True, "received": data}
'''


def starter_yaml(schema_url: str = SCHEMA_URL) -> str:
    return _STARTER.format(schema_url=schema_url)
