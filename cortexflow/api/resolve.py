"""Which queues.yaml and which Redis: the same rules for the CLI, the API and WorkerManager.

- config file: the argument, else ``$CORTEXFLOW_FILE``, else ``./queues.yaml``;
- Redis: an explicit URL, else ``redis.url`` of queues.yaml (which defaults to ``$REDIS_URL``),
  else the embedded server of that folder (started for as long as it is needed).

While the ``cortexflow`` pytest fixture runs (``pinned``), a QueueManager or WorkerManager given
no URL uses the fixture's server instead, and one given no config the fixture's queues.yaml:
code under test never reaches a real Redis nor starts the folder's embedded server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cortexflow.config.model import Config

DEFAULT_FILE = "queues.yaml"
ConfigSource = Config | str | os.PathLike[str] | None


@dataclass(frozen=True, eq=False)
class Pin:
    """The server and queues.yaml of a running ``cortexflow`` test fixture."""

    url: str
    config: Path


_pins: list[Pin] = []


def current_pin() -> Pin | None:
    """The innermost ``pinned`` block running in this process, if any."""
    return _pins[-1] if _pins else None


@contextlib.contextmanager
def pinned(url: str, config: str | os.PathLike[str]) -> Iterator[Pin]:
    """For the block, managers made without a ``redis_url`` use ``url`` (not ``redis.url``,
    ``$REDIS_URL`` nor the embedded server), and those made without a config ``config``.

    Process-wide, not per thread: an app under test runs its manager in threads of its own
    (e.g. Starlette's TestClient). cortexflow.testing's ``cortexflow`` fixture sets it.
    """
    pin = Pin(url, Path(config))
    _pins.append(pin)
    try:
        yield pin
    finally:
        _pins.remove(pin)


def config_file(source: str | os.PathLike[str] | None) -> Path:
    if source is None:
        source = os.environ.get("CORTEXFLOW_FILE") or DEFAULT_FILE
    return Path(source)


def load(source: ConfigSource, *, check_imports: bool = False) -> Config:
    """The Config itself, or the file loaded by the one loader (ConfigError when invalid)."""
    if isinstance(source, Config):
        return source
    from cortexflow.config import load_config

    pin = current_pin()
    if source is None and pin is not None:
        source = pin.config
    return load_config(config_file(source), check_imports=check_imports)


def open_endpoint(stack: contextlib.ExitStack, config: Config, override: str | None) -> str:
    """Enter ``redis_endpoint`` on ``stack`` (closing the stack releases an embedded server).

    With no ``override``, a ``pinned`` block's URL is used: nothing is entered."""
    pin = current_pin()
    if not override and pin is not None:
        return pin.url
    from cortexflow.embedded import redis_endpoint

    return stack.enter_context(redis_endpoint(config, override))
