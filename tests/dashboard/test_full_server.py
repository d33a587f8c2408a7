"""The dashboard on a full server (maxmemory reached, noeviction): a POST of jobs is a 507 with
a JSON error saying how full, /healthz says memoryPressure (still 200: the dashboard works),
and the overview and queue pages show the banner; with room again, all of it goes away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from cortexflow.embedded import ServerProcess
from tests.helpers.dashboard import ADMIN_TOKEN, dashboard_process, write_project

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_full_server_is_a_507_a_pressure_flag_and_a_banner(
    tmp_path: Path, private_server: Callable[..., ServerProcess]
) -> None:
    server = private_server(tmp_path / "data", appendonly=False)
    server.start()
    try:
        cfg = write_project(tmp_path / "app")
        admin = redis.Redis.from_url(server.url)
        with dashboard_process(cfg, server.url) as base:
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", used // 2)  # full: noeviction deletes nothing

            r = httpx.post(
                f"{base}/api/queues/work/jobs",
                json={"name": "w", "data": {}},
                headers=AUTH,
                timeout=10,
            )
            assert r.status_code == 507, r.text
            body = r.json()
            assert "full" in body["error"] and "maxmemory" in body["error"]
            assert body["maxmemory"] == used // 2 and body["usedMemory"] > body["maxmemory"]

            public = httpx.get(f"{base}/healthz", timeout=10)
            assert public.status_code == 200
            assert public.json() == {"ok": True, "memoryPressure": True}
            told = httpx.get(f"{base}/healthz", headers=AUTH, timeout=10).json()
            assert told["memory"]["pressure"] is True and told["memory"]["policy"] == "noeviction"
            strict = httpx.get(f"{base}/healthz?require_workers=1", headers=AUTH, timeout=10)
            assert strict.status_code == 503 and strict.json()["memoryPressure"] is True

            for page in ("/fragments/overview", "/fragments/queues/work"):
                html = httpx.get(base + page, headers=AUTH, timeout=10).text
                assert 'id="memory-pressure"' in html and "Redis memory pressure" in html, page

            admin.config_set("maxmemory", 0)
            r = httpx.post(
                f"{base}/api/queues/work/jobs",
                json={"name": "w", "data": {}},
                headers=AUTH,
                timeout=10,
            )
            assert r.status_code == 201, r.text
            assert httpx.get(f"{base}/healthz", timeout=10).json() == {"ok": True}
            html = httpx.get(base + "/fragments/overview", headers=AUTH, timeout=10).text
            assert "memory-pressure" not in html
    finally:
        server.stop()
