"""`cortexflow up` runs the dashboard when queues.yaml has a `dashboard:` section: started with
the workers, restarted when it dies, stopped with `up`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers.dashboard import ADMIN_TOKEN, free_port, wait_until, write_project
from tests.helpers.procs import Proc, cortexflow_argv, wait_gone


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, int]:
    config = write_project(tmp_path / "proj")
    port = free_port()
    config.write_text(config.read_text() + f"dashboard:\n  port: {port}\n")
    return config, port


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_up_runs_restarts_and_stops_the_dashboard(
    project: tuple[Path, int], redis_url: str
) -> None:
    config, port = project
    base = f"http://127.0.0.1:{port}"
    up = Proc(
        cortexflow_argv("up", "-f", str(config), "--redis-url", redis_url),
        cwd=config.parent,
        env={"CORTEXFLOW_TOKEN": ADMIN_TOKEN},
        name="up",
    )
    try:
        first = up.child_pid("dashboard")
        wait_until(lambda: answers(base + "/healthz"), timeout=60, what="dashboard up")
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        wait_until(
            lambda: len(httpx.get(base + "/api/workers", headers=headers, timeout=5).json()) == 3,
            timeout=60,
            what="the three workers seen by the dashboard",
        )
        os.kill(first, signal.SIGKILL)
        up.wait_for(r"dashboard exited with code -9; restarting in 1s", 30)
        second = up.child_pid("dashboard", 2)
        assert second != first
        wait_until(lambda: answers(base + "/healthz"), timeout=60, what="dashboard restarted")
        assert up.terminate(60) == 0
        assert wait_gone([second], 10) == []
        assert not answers(base + "/healthz")
    finally:
        up.kill()


def test_config_shows_the_dashboard_section(project: tuple[Path, int]) -> None:
    from cortexflow.config import load_config
    from cortexflow.config.dump import config_to_dict

    config, port = project
    loaded = load_config(config)
    assert loaded.dashboard is not None and loaded.dashboard.port == port
    assert config_to_dict(loaded)["dashboard"] == {
        "host": "127.0.0.1",
        "port": port,
        "metrics_public": False,
        "max_streams": 50,
    }
