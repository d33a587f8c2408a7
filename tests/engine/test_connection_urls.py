"""Redis URL forms (docs/engine.md): Sentinel URLs parsed, redacted and used against real processes.

The sentinel is the same valkey-server binary as the master, run with ``--sentinel``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from cortexflow.config.model import QueueConfig
from cortexflow.embedded import ServerProcess, find_server_binary, free_port
from cortexflow.engine.cluster import ClusterClient
from cortexflow.engine.connection import connect, connect_sync, ping
from cortexflow.engine.urls import SentinelURL, parse_sentinel_url
from cortexflow.errors import RedisUnavailableError
from cortexflow.redact import redact_url
from tests.helpers.jobs import engine_for, inproc_worker, make_config
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import run_cli
from tests.helpers.project import write_project
from tests.helpers.topology import Cluster

SERVICE = "mymaster"


# -- parsing and redaction (no server) -----------------------------------------------------------


def test_sentinel_url_parts() -> None:
    assert parse_sentinel_url("redis+sentinel://h1:26380,h2,[::1]:26381/svc/3") == SentinelURL(
        sentinels=[("h1", 26380), ("h2", 26379), ("::1", 26381)], service_name="svc", db=3
    )
    parsed = parse_sentinel_url(
        "rediss+sentinel://app:p%40ss%3Aword@h1:1/svc?sentinel_password=x&ssl_cert_reqs=none"
    )
    assert (parsed.username, parsed.password, parsed.ssl, parsed.db) == (
        "app",
        "p@ss:word",
        True,
        0,
    )
    assert parsed.options == {"sentinel_password": "x", "ssl_cert_reqs": "none"}
    only_password = parse_sentinel_url("redis+sentinel://:pw@h1:1/svc/")
    assert (only_password.username, only_password.password) == (None, "pw")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h1:26379", "no service name"),
        ("redis+sentinel://h1:26379/", "no service name"),
        ("redis+sentinel:///mymaster", "no sentinel host"),
        ("redis+sentinel://:pw@/mymaster", "no sentinel host"),
        ("redis+sentinel://h1:26379,,h2/mymaster", "empty sentinel address"),
        ("redis+sentinel://h1:26379,/mymaster", "empty sentinel address"),
        ("redis+sentinel://h1:port/mymaster", "bad port"),
        ("redis+sentinel://h1:70000/mymaster", "bad port"),
        ("redis+sentinel://:1/mymaster", "has no host"),
        ("redis+sentinel://[::1/mymaster", "Invalid IPv6 URL"),
        ("redis+sentinel://[::1]x:1/mymaster", "bad sentinel address"),
        ("redis+sentinel://h1/mymaster/zero", "is not a number"),
        ("redis+sentinel://h1/mymaster/0/extra", "more than /service_name/db"),
        ("redis+sentinel://h1/mymaster?timeout=3", "unknown option 'timeout'"),
        ("redis+sentinel://h1/mymaster?sentinel_ssl=maybe", "not true or false"),
    ],
)
def test_malformed_sentinel_urls_say_the_expected_form(url: str, why: str) -> None:
    with pytest.raises(RedisUnavailableError) as info:
        connect(url)
    message = str(info.value)
    assert why in message
    assert "expected redis+sentinel://[user:password@]host:port[,host:port...]" in message


def test_malformed_sentinel_url_message_hides_the_password() -> None:
    with pytest.raises(RedisUnavailableError) as info:
        connect("redis+sentinel://app:hunter2@h1:26379,,h2/mymaster")
    assert "hunter2" not in str(info.value)
    assert info.value.url == "redis+sentinel://app:***@h1:26379,,h2/mymaster"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "redis+sentinel://app:hunter2@h1:26379,h2:26380/mymaster/2",
            "redis+sentinel://app:***@h1:26379,h2:26380/mymaster/2",
        ),
        (
            "rediss+sentinel://:hunter2@h1/mymaster",
            "rediss+sentinel://:***@h1/mymaster",
        ),
        (
            "redis+sentinel://h1/mymaster?sentinel_username=s&sentinel_password=hunter2",
            "redis+sentinel://h1/mymaster?sentinel_username=s&sentinel_password=***",
        ),
        ("redis+sentinel://h1:26379,h2/mymaster", "redis+sentinel://h1:26379,h2/mymaster"),
        ("redis://u:hunter2@h:6379/0", "redis://u:***@h:6379/0"),
    ],
)
def test_redact_url_hides_sentinel_passwords(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "hunter2" not in redact_url(url)


def test_tls_sentinel_url_uses_tls_to_the_master_only() -> None:
    async def main() -> None:
        plain = connect("redis+sentinel://127.0.0.1:1/svc")
        tls = connect("rediss+sentinel://127.0.0.1:1/svc?ssl_cert_reqs=none")
        try:
            assert plain.connection_pool.connection_class is SentinelManagedConnection
            assert tls.connection_pool.connection_class is SentinelManagedSSLConnection
            assert tls.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
            sentinel = tls.connection_pool.sentinel_manager.sentinels[0]  # type: ignore[attr-defined]
            assert not sentinel.connection_pool.connection_kwargs.get("ssl")
        finally:
            await plain.aclose()
            await tls.aclose()

    asyncio.run(main())


def test_the_lease_threads_sentinel_client_takes_the_same_tls_options() -> None:
    """The blocking client (the lease thread's) is built from the same URL description as the
    async one: TLS to the master, and to the sentinels when sentinel_ssl says so (it once
    ignored sentinel_ssl, so TLS-only sentinels failed every renewal)."""
    url = (
        "rediss+sentinel://127.0.0.1:1/svc?ssl_cert_reqs=none&sentinel_ssl=true"
        "&sentinel_username=s&sentinel_password=pw"
    )
    client = connect_sync(url, 1.0)
    try:
        assert isinstance(client, redis.Redis)
        pool = client.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection)
        assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
        sentinel = pool.sentinel_manager.sentinels[0]  # type: ignore[attr-defined]
        kwargs = sentinel.connection_pool.connection_kwargs
        assert sentinel.connection_pool.connection_class is redis.SSLConnection
        assert (kwargs["username"], kwargs["password"]) == ("s", "pw")
    finally:
        client.close()


@pytest.mark.parametrize(
    "url",
    ["unix:///tmp/x.sock", "unix:///tmp/x.sock?db=3", "redis://127.0.0.1:1/2", "rediss://h:1/0"],
)
def test_a_unix_socket_gets_no_tcp_option_and_tcp_keeps_its_keepalive(url: str) -> None:
    """Each kind gets only the options it takes: redis-py refuses socket_keepalive on a unix
    connection at its first command (how the lease thread died on the default set-up)."""
    sync = connect_sync(url, 1.0)
    aio = connect(url)
    try:
        for kwargs in (
            sync.connection_pool.connection_kwargs,
            aio.connection_pool.connection_kwargs,
        ):
            assert ("socket_keepalive" in kwargs) == (not url.startswith("unix"))
    finally:
        sync.close()
        asyncio.run(aio.aclose())


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "rediss+cluster://u:hunter2@127.0.0.1:7000"],
)
def test_cluster_urls_make_a_cluster_client(url: str) -> None:
    """connect() hands Cluster URLs to the cluster layer (nothing connects until the first
    command; tests/scale/test_cluster_engine.py runs the engine on a real Cluster)."""
    client = connect(url)
    try:
        assert isinstance(client, ClusterClient)
        assert client.startup_nodes[0].port == 7000
    finally:
        asyncio.run(client.aclose())


def test_a_cluster_client_keeps_the_callers_socket_timeout() -> None:
    """The worker's consumer client asks for a socket timeout inside lease/3."""
    client = connect("redis+cluster://127.0.0.1:7000", retries=0, socket_timeout=2.5)
    try:
        assert isinstance(client, ClusterClient)
        assert client.connection_kwargs["socket_timeout"] == 2.5
        assert client.node_kwargs["socket_timeout"] == 2.5
    finally:
        asyncio.run(client.aclose())


def test_a_real_cluster_answers_through_connect(tmp_path: Path) -> None:
    topology = Cluster(tmp_path, 3, 0)
    try:
        topology.start()

        async def main() -> None:
            client = connect(topology.url())
            try:
                await ping(client, topology.url())
                assert isinstance(client, ClusterClient)
            finally:
                await client.aclose()

        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        topology.stop()


def test_a_cluster_option_on_a_plain_url_points_at_the_cluster_form() -> None:
    with pytest.raises(RedisUnavailableError) as info:
        connect("redis://u:hunter2@127.0.0.1:7000/0?cluster=true")
    assert "redis+cluster://" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["redis+cluster://u:hunter2@127.0.0.1:7000/3", "redis+cluster://u:hunter2@/0"]
)
def test_a_malformed_cluster_url_is_refused_without_the_password(url: str) -> None:
    with pytest.raises(RedisUnavailableError) as info:
        connect(url)
    assert "expected redis+cluster://" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- a real master and sentinel -------------------------------------------------------------------


@dataclass
class SentinelSetup:
    master: ServerProcess
    sentinel_port: int

    def url(self, db: int = 0, service: str = SERVICE, extra_hosts: str = "") -> str:
        hosts = f"{extra_hosts}127.0.0.1:{self.sentinel_port}"
        return f"redis+sentinel://{hosts}/{service}/{db}"

    def master_client(self, db: int) -> redis.Redis:
        return redis.Redis(host=self.master.host, port=self.master.port, db=db)


def _start_sentinel(folder: Path, master_port: int) -> tuple[subprocess.Popen[bytes], int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "sentinel.conf"
    conf.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {folder}\n"
        f"logfile {folder / 'sentinel.log'}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
    )
    proc = subprocess.Popen(
        [find_server_binary(), str(conf), "--sentinel"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, port


def _sentinel_knows_master(port: int, master_port: int) -> bool:
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        finally:
            client.close()
    except redis.RedisError:
        return False
    return bool(addr) and int(addr[1]) == master_port


@pytest.fixture(scope="module")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    root = tmp_path_factory.mktemp("sentinel")
    master = ServerProcess(root / "master", appendonly=False)
    master.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc, port = _start_sentinel(root / "sentinel", master.port)
        log = root / "sentinel" / "sentinel.log"

        def knows_master() -> bool:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"sentinel exited: {log.read_text() if log.exists() else ''}")
            return _sentinel_knows_master(port, master.port)

        wait_for(
            knows_master,
            15,
            message=lambda: f"sentinel did not start: {log.read_text() if log.exists() else ''}",
        )
        yield SentinelSetup(master, port)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        master.kill()


def test_engine_and_worker_through_a_sentinel_url(
    sentinel_setup: SentinelSetup, tmp_path: Path
) -> None:
    # A dead sentinel listed first: discovery moves on to the live one.
    url = sentinel_setup.url(db=7, extra_hosts=f"127.0.0.1:{free_port()},")
    direct = sentinel_setup.master_client(7)
    direct.flushdb()
    done: list[Any] = []

    async def handler(data: Any) -> dict[str, Any]:
        done.append(data["n"])
        return {"double": data["n"] * 2}

    async def main() -> None:
        queue = QueueConfig(name="sent", handler="x:y", concurrency=2)
        async with engine_for(url, queue) as e:
            await ping(e.client, url)
            ids = [await e.add("n", {"n": i}) for i in range(5)]
            ids += await e.add_bulk([("n", {"n": i}, None) for i in range(5, 10)])
            async with inproc_worker(make_config(tmp_path / "q.yaml", queue), "sent", url, handler):
                await wait_for_async(lambda: _completed(e, 10), 20, message="ten jobs done")
            job = await e.get_job(ids[3])
            assert job is not None and job.state == "completed"
            assert job.result == {"double": 6}

    asyncio.run(main())
    assert sorted(done) == list(range(10))
    # The jobs live on the master, in the URL's database.
    assert any(k.startswith(b"{cortexflow:sent}") for k in direct.keys("*"))
    direct.close()


async def _completed(e: Any, n: int) -> bool:
    return bool((await e.stats())["completed"] >= n)


def test_sentinel_client_rides_out_a_master_restart(sentinel_setup: SentinelSetup) -> None:
    url = sentinel_setup.url(db=8)

    async def main() -> None:
        client = connect(url)
        try:
            await client.set("k", "before")
            sentinel_setup.master.stop()
            sentinel_setup.master.start()  # same port: the sentinel still names it
            assert await client.get("k") is None  # no AOF in this fixture: a fresh server
            await client.set("k", "after")
            assert await client.get("k") == b"after"
        finally:
            await client.aclose()

    asyncio.run(main())


def test_unknown_service_is_unreachable(sentinel_setup: SentinelSetup) -> None:
    url = sentinel_setup.url(service="nosuch")

    async def main() -> None:
        client = connect(url, retries=1)
        try:
            with pytest.raises(RedisUnavailableError) as info:
                await ping(client, url)
            assert "No master found for 'nosuch'" in str(info.value)
        finally:
            await client.aclose()

    asyncio.run(main())


QUEUES_YAML = """\
version: 1
queues:
  mail:
    handler: handlers:send
"""


def test_cli_enqueue_and_stats_through_a_sentinel_url(
    sentinel_setup: SentinelSetup, tmp_path: Path
) -> None:
    write_project(tmp_path, QUEUES_YAML, {"handlers.py": "def send(data):\n    return data\n"})
    url = sentinel_setup.url(db=9)
    sentinel_setup.master_client(9).flushdb()

    r = run_cli(
        "enqueue",
        "mail",
        "-",
        "--job-id",
        "m-1",
        "--redis-url",
        url,
        cwd=tmp_path,
        input='{"to": "a@example.com"}',
    )
    assert (r.returncode, r.stdout) == (0, "m-1\n"), r.stderr
    r = run_cli("stats", "mail", "--json", "--redis-url", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [stats] = json.loads(r.stdout)
    assert stats["waiting"] == 1
    assert not (tmp_path / ".cortexflow").exists()  # no embedded server was started

    secret = url.replace("redis+sentinel://", "redis+sentinel://app:hunter2@").replace(
        f"/{SERVICE}/", "/nosuch/"
    )
    r = run_cli("stats", "mail", "--redis-url", secret, cwd=tmp_path)
    assert r.returncode == 69, r.stderr
    assert "hunter2" not in r.stderr + r.stdout and "app:***@" in r.stderr
