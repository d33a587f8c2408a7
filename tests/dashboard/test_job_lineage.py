"""The dashboard's job page shows a pipeline job's parent and children as links (and the JSON
API has them), for jobs a `next:` route added in the finish call."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx

from cortexflow.config.model import Route
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import Router
from cortexflow.engine.queue import QueueEngine
from tests.helpers.dashboard import ADMIN_TOKEN, serve_dashboard
from tests.helpers.jobs import Jobs
from tests.pipelines.conftest import complete, lease_one


def test_the_job_page_links_parent_and_children(project: Path, redis_url: str) -> None:
    jobs = Jobs(project, redis_url)
    work = dataclasses.replace(
        jobs.config.queues["work"], routes=(Route(to="dead", name="next", for_each="/xs"),)
    )
    configs = {**jobs.config.queues, "work": work}

    async def hand_off(e: QueueEngine) -> None:
        fetched = await lease_one(e, "p1")
        router = Router(work, configs.__getitem__, jobs.config.redis.prefix, outbox=False)
        out = complete(fetched, {"xs": [{"a": 1}, {"a": 2}]}, router)
        assert await QueueConsumer(e, "w", e.client).finish([out]) == (1, 0, 0)

    jobs.run("work", hand_off)
    with serve_dashboard(project, redis_url) as url, httpx.Client(base_url=url, timeout=20) as b:
        b.get("/?token=" + ADMIN_TOKEN)
        page = b.get("/queues/work/jobs/p1").text
        assert '<a href="/queues/dead/jobs/work-p1-0-0">dead/work-p1-0-0</a>' in page
        assert '<a href="/queues/dead/jobs/work-p1-0-1">dead/work-p1-0-1</a>' in page
        child = b.get("/queues/dead/jobs/work-p1-0-1").text
        assert '<dd id="job-parent"><a href="/queues/work/jobs/p1">work/p1</a></dd>' in child
        api = b.get(
            "/api/queues/dead/jobs/work-p1-0-1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert api["parent"] == {"queue": "work", "id": "p1"}
