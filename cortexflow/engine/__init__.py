"""The Redis side of cortexflow: Lua scripts and the Python functions that call them.

Nothing outside this package reads or writes cortexflow's Redis keys.
"""

from cortexflow.engine.connection import connect, redact_url
from cortexflow.engine.jobs import Job, JobOptions
from cortexflow.engine.queue import QueueEngine, all_stats, health

__all__ = ["Job", "JobOptions", "QueueEngine", "all_stats", "connect", "health", "redact_url"]
