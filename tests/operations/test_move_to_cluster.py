"""docs/operations.md's move to a Redis Cluster: a single server's queues (waiting, delayed and
finished jobs, the data format key) copied with `valkey-cli --cluster import`, cortexflow
stopped; `cortexflow stats` shows the same counts on the Cluster, and workers there run every
job that was waiting or delayed, once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from cortexflow.embedded import ServerProcess, find_server_binary, free_port
from cortexflow.engine.jobs import JobOptions
from tests.helpers.jobs import Jobs
from tests.helpers.procs import Proc, cortexflow_argv, run_cli
from tests.helpers.project import RECORDER, write_project
from tests.helpers.topology import Cluster

pytestmark = pytest.mark.slow

# Three queues, which a 3-primary Cluster spreads over its primaries (tests/scale).
QUEUES = ("jobs", "dead", "work")
QUEUES_YAML = "queues:\n" + "".join(f"  {q}:\n    handler: rec:handle\n" for q in QUEUES)


def _stats(project: Path, url: str) -> list[dict[str, object]]:
    r = run_cli("stats", "--json", "-f", str(project), "--redis-url", url)
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def _local(node: redis.Redis, key: str) -> bool:
    """Whether ``key`` is on this node (KEYS lists its own keys; EXISTS would answer MOVED)."""
    return bool(node.keys(key))


def test_queues_move_to_a_cluster_with_cluster_import(tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", QUEUES_YAML, RECORDER)
    source = ServerProcess(tmp_path / "source", port=free_port(), appendonly=False)
    source.start()
    cluster = Cluster(tmp_path / "cluster", 3, 0)
    procs: list[Proc] = []
    try:
        url = source.url
        jobs = Jobs(project, url)
        for q in QUEUES:
            jobs.run(q, lambda e, q=q: e.add_bulk(
                [("n", {}, JobOptions(job_id=f"{q}-done-{i}")) for i in range(3)]))  # fmt: skip
        for q in QUEUES:  # finished before the move
            argv = cortexflow_argv("worker", q, "-f", str(project), "--redis-url", url)
            procs.append(Proc(argv, cwd=project.parent, env={"TEST_REDIS_URL": url}, name=q))
        for q in QUEUES:
            jobs.wait_stats(q, lambda s: s["completed"] == 3, 30)
        for proc in procs:
            proc.stop()
        for q in QUEUES:
            jobs.run(q, lambda e, q=q: e.add_bulk(
                [("n", {}, JobOptions(job_id=f"{q}-wait-{i}")) for i in range(4)]
                + [("n", {}, JobOptions(job_id=f"{q}-later-{i}", delay=2.0)) for i in range(2)]))  # fmt: skip
        before = _stats(project, url)

        cluster.start()
        cli = Path(find_server_binary()).with_name("valkey-cli")
        imported = subprocess.run(
            [str(cli), "--cluster", "import", f"127.0.0.1:{cluster.nodes[0].port}",
             "--cluster-from", f"127.0.0.1:{source.port}", "--cluster-copy"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stdout + imported.stderr
        source.kill()  # the old server is gone: everything below runs on the Cluster

        target = cluster.url()
        after = _stats(project, target)
        assert after == before
        nodes = [redis.Redis(port=n.port) for n in cluster.nodes]
        assert sum(_local(n, "{cortexflow}:format") for n in nodes) == 1
        # Each queue whole on one primary (its hash tag), the three on three primaries.
        owners = {q: [_local(n, f"{{cortexflow:{q}}}:meta") for n in nodes] for q in QUEUES}
        assert all(sum(o) == 1 for o in owners.values()), owners
        assert len({o.index(True) for o in owners.values()}) == 3, owners

        for q in QUEUES:
            argv = cortexflow_argv("worker", q, "-f", str(project), "--redis-url", target)
            procs.append(Proc(argv, cwd=project.parent, env={"TEST_REDIS_URL": target}, name=q))
        moved = Jobs(project, target)
        for q in QUEUES:
            moved.wait_stats(
                q, lambda s: s["completed"] == 9 and s["waiting"] + s["delayed"] == 0, 60
            )
        # Every job ran once: the 3 per queue before the move (their records copied with the
        # rest), the 6 moved ones after it.
        runs = [
            json.loads(r)["id"]
            for n in nodes
            if _local(n, "test:runs")  # the recorder's list, on the node of its slot
            for r in n.lrange("test:runs", 0, -1)
        ]
        expected = [f"{q}-{kind}-{i}" for q in QUEUES
                    for kind, k in (("done", 3), ("wait", 4), ("later", 2)) for i in range(k)]  # fmt: skip
        assert sorted(runs) == sorted(expected)
    finally:
        for proc in procs:
            proc.kill()
        source.kill()
        cluster.stop()
