"""Groups through the CLI (real subprocesses), the Python API and the HTTP API: add with a group,
`groups`, pause and resume one group, `jobs --group`, and the errors of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cortexflow.api.manager import QueueManager
from cortexflow.errors import UsageError
from tests.helpers.dashboard import ADMIN_TOKEN, READ_TOKEN, serve_dashboard
from tests.helpers.procs import Cli
from tests.helpers.project import write_project

PROJECT = """
version: 1
queues:
  chat:
    handler: handlers:handle
    payload_schema: chat.schema.json
    group: {key: [/channel, /user]}
  plain:
    handler: handlers:handle
"""
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"channel": {"type": "string"}, "user": {"type": "string"}, "n": {}},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = write_project(
        tmp_path / "proj", PROJECT, {"handlers.py": "async def handle(data):\n    return None\n"}
    )
    (path.parent / "chat.schema.json").write_text(json.dumps(SCHEMA))
    return path


@pytest.mark.slow  # 14 CLI runs
def test_cli_groups_pause_resume_and_jobs_of_a_group(project: Path, redis_url: str) -> None:
    cf = Cli(project, redis_url)
    for n, user in enumerate(["u1", "u1", "u2"]):
        r = cf("enqueue", "chat", "-", input=json.dumps({"channel": "tg", "user": user, "n": n}))
        assert r.returncode == 0, r.stderr
    r = cf("enqueue", "chat", "-", "--group", "vip", "--job-id", "v1", input='{"n": 9}')
    assert (r.returncode, r.stdout) == (0, "v1\n"), r.stderr

    r = cf("groups", "chat", "--json")
    stats = json.loads(r.stdout)
    assert stats["groups"] == [
        {"group": "tg:u1", "waiting": 2, "active": 0, "paused": False},
        {"group": "tg:u2", "waiting": 1, "active": 0, "paused": False},
        {"group": "vip", "waiting": 1, "active": 0, "paused": False},
    ]
    assert (stats["groupsWaiting"], stats["jobsWaitingInGroups"]) == (3, 4)
    r = cf("groups", "chat")
    assert r.returncode == 0 and r.stdout.splitlines()[1].split() == ["tg:u1", "2", "0"]

    r = cf("pause", "chat", "--group", "tg:u2")
    assert r.returncode == 0 and "paused group 'tg:u2'" in r.stderr
    r = cf("groups", "chat", "--json")
    assert {"group": "tg:u2", "waiting": 1, "active": 0, "paused": True} in json.loads(r.stdout)[
        "groups"
    ]
    r = cf("resume", "chat", "--group", "tg:u2", "--json")
    assert json.loads(r.stdout) == {"queue": "chat", "group": "tg:u2", "paused": False}

    r = cf("jobs", "chat", "--group", "tg:u1", "--json")
    assert [j["data"]["n"] for j in json.loads(r.stdout)] == [0, 1]
    assert {j["group"] for j in json.loads(r.stdout)} == {"tg:u1"}
    assert cf.stats("chat")["waiting"] == 4

    # Bad input: a group on a queue without groups, an empty group: exit 2, nothing written.
    r = cf("enqueue", "plain", "-", "--group", "x", input="{}")
    assert r.returncode == 2 and "has no groups" in r.stderr and "Traceback" not in r.stderr
    r = cf("pause", "chat", "--group", "")
    assert r.returncode == 2 and "group key is 1-256 characters" in r.stderr
    assert cf.stats("plain")["waiting"] == 0


def test_validate_points_at_a_group_key_the_payload_schema_refuses(
    project: Path, redis_url: str
) -> None:
    project.write_text(PROJECT.replace("[/channel, /user]", "[/channel, /userId]"))
    r = Cli(project, redis_url)("validate")
    assert r.returncode != 0
    assert "queues.yaml:7:29: error[group.key]" in r.stdout
    assert "allows no property 'userId'" in r.stderr + r.stdout


def test_api_and_http(project: Path, redis_url: str) -> None:
    import asyncio

    async def api() -> None:
        async with QueueManager(project, redis_url) as m:
            await m.add_job("chat", "n", {"channel": "a", "user": "b"})
            await m.add_job("chat", "n", {"n": 1}, group="team")
            await m.add_bulk("chat", [{"name": "n", "data": {}, "opts": {"group": "team"}}])
            with pytest.raises(UsageError, match="has no groups"):
                await m.add_job("plain", "n", {}, group="team")
            assert await m.pause_group("chat", "team") is True
            assert await m.resume_group("chat", "team") is True
            stats = await m.get_group_stats("chat")
            assert [(g["group"], g["waiting"]) for g in stats["groups"]] == [
                ("team", 2),
                ("a:b", 1),
            ]

    asyncio.run(api())
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    with serve_dashboard(project, redis_url) as base, httpx.Client(base_url=base) as http:
        r = http.post(
            "/api/queues/chat/jobs",
            json={"name": "n", "data": {}, "opts": {"group": "web"}},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        r = http.get("/api/queues/chat/groups", headers=read)
        assert r.status_code == 200 and len(r.json()["groups"]) == 3
        r = http.post("/api/queues/chat/pause", json={"group": "web"}, headers=read)
        assert r.status_code == 403
        r = http.post("/api/queues/chat/pause", json={"group": "web"}, headers=admin)
        assert r.json() == {"queue": "chat", "group": "web", "paused": True, "changed": True}
        r = http.get("/api/queues/chat/groups", headers=read)
        assert {"group": "web", "waiting": 1, "active": 0, "paused": True} in r.json()["groups"]
        r = http.post("/api/queues/chat/resume", json={"group": "web"}, headers=admin)
        assert r.json()["paused"] is False
        r = http.get("/api/queues/chat/jobs?state=waiting&group=team", headers=read)
        assert [j["group"] for j in r.json()["jobs"]] == ["team", "team"]
        r = http.post(
            "/api/queues/plain/jobs",
            json={"name": "n", "data": {}, "opts": {"group": "web"}},
            headers=admin,
        )
        assert r.status_code == 422 and "has no groups" in r.text
        r = http.post("/api/queues/chat/pause", json={"group": 5}, headers=admin)
        assert r.status_code == 422
