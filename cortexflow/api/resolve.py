"""Which queues.yaml and which Redis: the same rules for the CLI, the API and WorkerManager.

- config file: the argument, else ``$CORTEXFLOW_FILE``, else ``./queues.yaml``;
- Redis: an explicit URL, else ``redis.url`` of queues.yaml (which defaults to ``$REDIS_URL``),
  else the embedded server of that folder (started for as long as it is needed).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cortexflow.config.model import Config

DEFAULT_FILE = "queues.yaml"
ConfigSource = Config | str | os.PathLike[str] | None


def config_file(source: str | os.PathLike[str] | None) -> Path:
    if source is None:
        source = os.environ.get("CORTEXFLOW_FILE") or DEFAULT_FILE
    return Path(source)


def load(source: ConfigSource, *, check_imports: bool = False) -> Config:
    """The Config itself, or the file loaded by the one loader (ConfigError when invalid)."""
    if isinstance(source, Config):
        return source
    from cortexflow.config import load_config

    return load_config(config_file(source), check_imports=check_imports)


def open_endpoint(stack: contextlib.ExitStack, config: Config, override: str | None) -> str:
    """Enter ``redis_endpoint`` on ``stack`` (closing the stack releases an embedded server)."""
    from cortexflow.embedded import redis_endpoint

    return stack.enter_context(redis_endpoint(config, override))
