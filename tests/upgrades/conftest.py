"""The previous release beside this code: its package extracted from its git tag into a folder,
run by this interpreter and venv with ``PYTHONPATH`` pointing there (so it runs with today's
installed dependencies, as a host upgraded in place would), and a project both versions run.

``PREVIOUS_RELEASE`` is the tag tested against, ``PREVIOUS_COMMIT`` the commit it names (a
clone of main without tags still has it); raise both at each release (docs/operations.md,
"Releases"). Without either (an archive, a shallow clone) the tests skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import Proc, clean_env, cortexflow_argv
from tests.helpers.project import REPO, write_project

PREVIOUS_RELEASE = "v0.1.0"
PREVIOUS_COMMIT = "2f3403fe2c23f6491e56ac4c68918bcc9b923a24"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False, timeout=60
    )


def _missing(reason: str) -> None:
    pytest.skip(reason)


def _release() -> str | None:
    """The commit of the previous release: its tag, else its known commit (a clone without
    tags); None when neither is here. A tag that names another commit is a mistake."""
    tagged = _git("rev-parse", "-q", "--verify", f"{PREVIOUS_RELEASE}^{{commit}}")
    if tagged.returncode == 0:
        commit = tagged.stdout.strip()
        assert commit == PREVIOUS_COMMIT, (
            f"{PREVIOUS_RELEASE} is {commit}, PREVIOUS_COMMIT says {PREVIOUS_COMMIT}: set both "
            "to the last release"
        )
        return commit
    known = _git("rev-parse", "-q", "--verify", f"{PREVIOUS_COMMIT}^{{commit}}")
    return PREVIOUS_COMMIT if known.returncode == 0 else None


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the ``cortexflow`` package of ``PREVIOUS_RELEASE``, checked to import."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        _missing(f"not a git checkout: the tag {PREVIOUS_RELEASE} cannot be read")
    release = _release()
    if release is None:
        _missing(
            f"neither the tag {PREVIOUS_RELEASE} nor its commit {PREVIOUS_COMMIT[:12]} is in "
            "this checkout (a shallow clone): `git fetch --unshallow --tags` to run the "
            "mixed-version tests"
        )
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", str(release), "cortexflow"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert archive.returncode == 0, archive.stderr
    tar = subprocess.run(
        ["tar", "-x", "-C", str(folder)], input=archive.stdout, capture_output=True, check=False
    )
    assert tar.returncode == 0, tar.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import cortexflow, cortexflow.worker.main, cortexflow.api;"
         "print(cortexflow.__file__, cortexflow.__version__)"],
        env=clean_env({"PYTHONPATH": str(folder)}),
        cwd=folder,  # not this worktree, whose package `python -c` would find first
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, (
        f"{PREVIOUS_RELEASE} no longer imports with today's installed dependencies:\n{probe.stderr}"
    )
    assert probe.stdout.startswith(str(folder)), probe.stdout  # not this worktree's package
    return folder


# The project both versions run: its queues.yaml must load in both.
QUEUES_YAML = """\
queues:
  mixed:
    handler: mix:handle
    concurrency: 1
    attempts: 1
    backoff: {type: fixed, delay: 100ms}
  shared:
    handler: mix:handle
    concurrency: 4
    attempts: 1
  timeouts:
    handler: mix:handle
    timeout: 1s
    attempts: 2
    backoff: {type: fixed, delay: 100ms}
"""

# Records every run (id, attempt, which version ran it, when), then fails while the attempt is
# below data.fail_until, or sleeps data.sleep seconds.
HANDLER = """\
import asyncio, json, os, time
import redis.asyncio as aioredis

_client = None

async def handle(data, job):
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    run = {"id": job.id, "queue": job.queue, "attempt": job.attempt, "t": time.time(),
           "side": os.environ["MIX_SIDE"], "data": data}
    await _client.rpush("mix:runs", json.dumps(run))
    if data.get("sleep"):
        await asyncio.sleep(data["sleep"])
    if job.attempt < data.get("fail_until", 0):
        raise RuntimeError(f"told to fail attempt {job.attempt}")
    return {"side": os.environ["MIX_SIDE"]}
"""

# Adds the jobs of a JSON spec through the public Python API (or pauses or resumes a queue);
# prints {key: {id, t0}} (t0: the wall clock just before its add).
PRODUCER = """\
import asyncio, json, sys, time
from cortexflow import QueueManager

async def main():
    spec = json.loads(sys.stdin.read())
    out = {}
    async with QueueManager(spec["config"], spec["url"]) as manager:
        for job in spec["jobs"]:
            if "op" in job:  # {"op": "pause" | "resume", "queue": ...}
                await getattr(manager, job["op"] + "_queue")(job["queue"])
                continue
            t0 = time.time()
            job_id = await manager.add_job(job["queue"], job["name"], job["data"], **job["opts"])
            out[job["key"]] = {"id": job_id, "t0": t0}
    print(json.dumps(out))

asyncio.run(main())
"""


@dataclass
class Versions:
    """Starts workers and producers of either version on one project and database."""

    project: Path
    url: str
    old: Path  # the previous release's package folder
    started: list[Proc]

    def env(self, side: str) -> dict[str, str]:
        code = self.old if side == "old" else REPO
        return {"PYTHONPATH": str(code), "TEST_REDIS_URL": self.url, "MIX_SIDE": side}

    def worker(self, side: str, queue: str, *args: str) -> Proc:
        argv = cortexflow_argv("worker", queue, "-f", str(self.project), "--redis-url", self.url)
        proc = Proc(
            [*argv, *args],
            cwd=self.project.parent,
            env=self.env(side),
            name=f"{side}-{queue}",
        )
        self.started.append(proc)
        return proc

    def produce(self, side: str, jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        spec = {"config": str(self.project), "url": self.url, "jobs": jobs}
        r = subprocess.run(
            [sys.executable, "produce.py"],
            cwd=self.project.parent,
            env=clean_env(self.env(side)),
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert r.returncode == 0, f"{side} producer:\n{r.stderr}"
        return dict(json.loads(r.stdout))


@pytest.fixture
def versions(
    previous_release: Path, redis_url: str, tmp_path: Path
) -> Iterator[Callable[[], Versions]]:
    started: list[Proc] = []
    project = write_project(
        tmp_path / "app", QUEUES_YAML, {"mix.py": HANDLER, "produce.py": PRODUCER}
    )
    yield lambda: Versions(project, redis_url, previous_release, started)
    for proc in started:
        proc.kill()
