"""queues.yaml -> frozen Config (one loader for validate, up, enqueue and the Python API)."""

from cortexflow.config.model import (
    Backoff,
    Config,
    QueueConfig,
    RateLimit,
    RedisConfig,
    RestartPolicy,
    Retention,
    RetentionRule,
)

__all__ = [
    "Backoff",
    "Config",
    "QueueConfig",
    "RateLimit",
    "RedisConfig",
    "RestartPolicy",
    "Retention",
    "RetentionRule",
]
