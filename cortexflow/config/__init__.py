"""queues.yaml -> frozen Config (one loader for validate, up, enqueue and the Python API)."""

from cortexflow.config.diagnostics import Diagnostic
from cortexflow.config.importer import ImportFromStringError, import_from_string, resolve_handler
from cortexflow.config.loader import check_config, load_config
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
    "Diagnostic",
    "ImportFromStringError",
    "QueueConfig",
    "RateLimit",
    "RedisConfig",
    "RestartPolicy",
    "Retention",
    "RetentionRule",
    "check_config",
    "import_from_string",
    "load_config",
    "resolve_handler",
]
