"""A refused password, user, database or permission is reported as such (exit 77), not as an
unreachable server (exit 69, "Start the server")."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cortexflow import QueueManager
from cortexflow.embedded import ServerProcess
from cortexflow.errors import EXIT_NOPERM, RedisAuthError
from tests.helpers.procs import CliResult

PASSWORD = "p@ss:w/rd%#?"  # every character that must be percent-encoded in a URL
ENCODED = urllib.parse.quote(PASSWORD, safe="")


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a password on the default user and a user that may not even PING."""
    server = ServerProcess(
        tmp_path_factory.mktemp("locked"), appendonly=False, extra={"requirepass": PASSWORD}
    )
    server.start()
    admin = redis.Redis(host=server.host, port=server.port, password=PASSWORD)
    admin.execute_command("ACL", "SETUSER", "noping", "on", ">pw", "~*", "+@all", "-ping")
    admin.close()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "queues.yaml").write_text("version: 1\nqueues:\n  emails:\n    handler: t:f\n")
    (tmp_path / "t.py").write_text("def f(data):\n    return None\n")
    return tmp_path


def url(server: ServerProcess, userinfo: str = "", db: int = 0) -> str:
    at = f"{userinfo}@" if userinfo else ""
    return f"redis://{at}{server.host}:{server.port}/{db}"


def stats(cli: Callable[..., CliResult], project: Path, redis_url: str) -> CliResult:
    return cli("stats", "--redis-url", redis_url, cwd=project, timeout=60)


def assert_refused(result: CliResult, *words: str) -> None:
    assert result.returncode == EXIT_NOPERM, (result.returncode, result.stderr)
    assert "cannot reach" not in result.stderr and "Start the server" not in result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert PASSWORD not in result.stderr and ENCODED not in result.stderr


def test_no_password_says_the_server_requires_one(
    locked_server: ServerProcess, project: Path, cli: Callable[..., CliResult]
) -> None:
    result = stats(cli, project, url(locked_server))
    assert_refused(result, "authentication required", "redis://USER:PASSWORD@")


def test_wrong_password_names_authentication_and_percent_encoding(
    locked_server: ServerProcess, project: Path, cli: Callable[..., CliResult]
) -> None:
    result = stats(cli, project, url(locked_server, ":wrong"))
    assert_refused(result, "authentication failed", "percent-encoded", "REDIS_URL")
    result = stats(cli, project, url(locked_server, "ghost:wrong"))
    assert_refused(result, "authentication failed for user 'ghost'")


def test_a_percent_encoded_password_works(
    locked_server: ServerProcess, project: Path, cli: Callable[..., CliResult]
) -> None:
    result = stats(cli, project, url(locked_server, f":{ENCODED}"))
    assert result.returncode == 0, result.stderr


def test_wrong_database_and_noperm_are_named(
    locked_server: ServerProcess, project: Path, cli: Callable[..., CliResult]
) -> None:
    assert_refused(stats(cli, project, url(locked_server, f":{ENCODED}", 300)), "no such database")
    assert_refused(
        stats(cli, project, url(locked_server, "noping:pw")),
        "permission denied (NOPERM) for user 'noping'",
    )


def test_up_with_a_wrong_password_exits_77_at_once(
    locked_server: ServerProcess, project: Path, cli: Callable[..., CliResult]
) -> None:
    result = cli("up", "--redis-url", url(locked_server, ":wrong"), cwd=project, timeout=60)
    assert_refused(result, "authentication failed")


def test_the_api_raises_redis_auth_error(locked_server: ServerProcess, project: Path) -> None:
    async def main() -> None:
        async with QueueManager(project / "queues.yaml", url(locked_server, ":wrong")):
            pass

    with pytest.raises(RedisAuthError, match="authentication failed"):
        asyncio.run(main())
