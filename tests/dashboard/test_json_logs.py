"""`cortexflow dashboard --log-format json`: its own lines and uvicorn's (error and access
loggers, through the log config cortexflow gives uvicorn) are one JSON object each."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from tests.helpers.dashboard import free_port, wait_until, write_project
from tests.helpers.procs import Proc, cortexflow_argv


def test_dashboard_json_lines(tmp_path: Path, redis_url: str) -> None:
    path = write_project(tmp_path / "proj")
    port = free_port()
    argv = cortexflow_argv(
        "dashboard", "-f", str(path), "--redis-url", redis_url, "--port", str(port),
        "--log-format", "json",
    )  # fmt: skip
    dash = Proc(argv, cwd=path.parent, name="dashboard")
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 30, "the dashboard never answered")
        with socket.create_connection(("127.0.0.1", port)) as s:  # uvicorn warns about it
            s.sendall(b"NOT HTTP\r\n\r\n")
            s.recv(1024)
        dash.wait_for("Invalid HTTP request", 10)
        assert dash.terminate() == 0
    finally:
        dash.kill()
    lines = dash.err().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and {"ts", "level", "logger", "pid"} <= set(r) for r in records)
    assert {r["pid"] for r in records} == {dash.pid}
    opened = next(r for r in records if r["message"].startswith("dashboard: open "))
    assert opened["logger"] == "cortexflow.dashboard" and opened["level"] == "INFO"
    invalid = next(r for r in records if "Invalid HTTP request" in r["message"])
    assert invalid["logger"] == "uvicorn.error" and invalid["level"] == "WARNING"
