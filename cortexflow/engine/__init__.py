"""The Redis side of cortexflow: Lua scripts and the Python functions that call them.

Nothing outside this package reads or writes cortexflow's Redis keys.
"""

from cortexflow.engine.connection import connect
from cortexflow.engine.health import health
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.queue import QueueEngine, all_stats
from cortexflow.redact import redact_url

__all__ = ["Job", "JobOptions", "QueueEngine", "all_stats", "connect", "health", "redact_url"]
