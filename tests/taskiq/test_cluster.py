"""cortexflow.taskiq on a 3-primary Valkey Cluster: kiq (alone and in bulk, to queues in
different slots), wait_result of a value and of a failure, and progress, as on one server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from cortexflow.engine.cluster import owner
from tests.helpers.poll import wait_for_async
from tests.helpers.topology import Cluster, emptied_url, running_cluster
from tests.taskiq.conftest import App

pytestmark = pytest.mark.slow

TASKS = """
import asyncio
from taskiq import TaskiqDepends
from taskiq.depends.progress_tracker import ProgressTracker

go = asyncio.Event()

@broker.task(queue="emails")
async def echo(value):
    return value

@broker.task(queue="reports")
async def report(n: int) -> int:
    return n * 2

@broker.task(queue="emails")
async def boom() -> None:
    raise ValueError("no luck")

@broker.task(queue="emails")
async def progress(tracker: ProgressTracker[dict] = TaskiqDepends()) -> str:
    await tracker.set_progress("STARTED", {"done": 1})
    await go.wait()
    return "ok"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def redis_url(cluster: Cluster) -> str:
    return emptied_url(cluster)


def test_tasks_and_their_results_on_a_cluster(make_app: Callable[..., App]) -> None:
    app = make_app(TASKS)

    async def main() -> None:
        manager = app.broker.manager
        client = await manager.redis_client()
        metas = [manager.get_queue(q).keys.meta for q in ("emails", "reports", "dead")]
        nodes = {await owner(client, key) for key in metas}  # type: ignore[arg-type]
        assert len(nodes) > 1, "the queues should live on different primaries"
        async with app.workers("emails", "reports", "dead"):
            one = await app.module.echo.kiq({"a": 1})
            assert (await one.wait_result(timeout=20)).return_value == {"a": 1}
            async with app.broker.bulk():  # one add per queue, on its own primary
                both = [await app.module.echo.kiq(i) for i in range(5)]
                both += [await app.module.report.kiq(i) for i in range(5)]
            values = [(await t.wait_result(timeout=20)).return_value for t in both]
            assert values == [0, 1, 2, 3, 4, 0, 2, 4, 6, 8]
            failed = await (await app.module.boom.kiq()).wait_result(timeout=20)
            assert failed.is_err and "no luck" in str(failed.error)
            running = await app.module.progress.kiq()

            async def started() -> bool:
                got = await running.get_progress()
                return got is not None and got.meta == {"done": 1}

            await wait_for_async(started, 20, message="progress set on the cluster")
            app.module.go.set()
            assert (await running.wait_result(timeout=20)).return_value == "ok"

    asyncio.run(main())
