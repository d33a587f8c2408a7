"""Each example's README commands, run as written (in a copy of the example's folder, so the
embedded server's data never lands in the repository; only the app's port is changed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortexflow.embedded import free_port
from tests.helpers.poll import wait_for
from tests.helpers.procs import Proc, clean_env
from tests.helpers.project import REPO
from tests.helpers.services import answers

EXAMPLES = REPO / "examples"


def readme_commands(example: str) -> list[str]:
    """Every line of the README's bash blocks, comments stripped."""
    text = (EXAMPLES / example / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def env() -> dict[str, str]:
    """The venv's bin first on PATH, as after `. .venv/bin/activate`: `cortexflow`, `python`;
    what to add to ``clean_env()``."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }


class Runner:
    def __init__(self, example: str, cwd: Path) -> None:
        self.commands = readme_commands(example)
        self.cwd = cwd
        self.background: list[Proc] = []

    def check(self, command: str) -> str:
        assert command in self.commands, f"not in the README any more: {command}"
        return command

    def run(self, command: str, **replace: str) -> subprocess.CompletedProcess[str]:
        line = self.check(command)
        for old, new in replace.items():
            line = line.replace(old, new)
        proc = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=clean_env(env()), capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, command: str, **replace: str) -> Proc:
        line = self.check(command)
        for old, new in replace.items():
            line = line.replace(old, new)
        proc = Proc(["bash", "-c", f"exec {line}"], cwd=self.cwd, env=env(), name="bg")
        self.background.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.background):
            proc.stop()


@pytest.fixture
def runner() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for r in made:
        r.stop()


def copy_example(example: str, dest: Path) -> Path:
    folder = dest / example
    shutil.copytree(EXAMPLES / example, folder, ignore=shutil.ignore_patterns(".cortexflow"))
    return folder


@pytest.mark.slow
def test_own_app_readme(tmp_path: Path, runner: list[Runner]) -> None:
    folder = copy_example("own_app", tmp_path)
    r = Runner("own_app", folder)
    runner.append(r)
    assert r.check("cd examples/own_app")
    r.run("cortexflow validate")
    up = r.start("cortexflow up")
    up.wait_for(r"\) ready$", timeout=60, count=3)
    r.run("cortexflow enqueue orders order.json")
    r.run("cortexflow enqueue orders bad-order.json")
    wait_for(lambda: "receipt-A-1001" in r.run("cortexflow jobs receipts --state completed").stdout,
             30, message="the receipt")  # fmt: skip
    wait_for(lambda: "completed" in r.run("cortexflow jobs failed-orders").stdout, 30,
             message="dead letter")  # fmt: skip
    stats = r.run("cortexflow stats").stdout
    assert re.search(r"^orders\s+0\s+0\s+0\s+1\s+1\s+no$", stats, re.M), stats
    assert "order A-1002 failed for good: UnrecoverableError: cannot charge 0 EUR" in up.log()


@pytest.mark.slow
def test_custom_worker_readme(tmp_path: Path, runner: list[Runner]) -> None:
    folder = copy_example("custom_worker", tmp_path)
    r = Runner("custom_worker", folder)
    runner.append(r)
    assert r.check("cd examples/custom_worker")
    r.run("cortexflow validate")
    printed = r.run("python run.py").stdout
    assert "'Hello world' -> 'hola mundo' (es)" in printed
    assert "'Good morning' -> 'bon matin' (fr)" in printed
    up = r.start("cortexflow up")
    up.wait_for(r"\) ready$", timeout=60)
    r.run("""echo '{"text": "hello world", "to": "fr"}' | cortexflow enqueue translations -""")
    wait_for(lambda: "completed" in r.run("cortexflow jobs translations --state completed").stdout,
             30, message="translated")  # fmt: skip


@pytest.mark.slow
def test_broadcast_readme(tmp_path: Path, runner: list[Runner]) -> None:
    """A broadcast fanned out per recipient, then one summary job: the join of next: routes."""
    folder = copy_example("broadcast", tmp_path)
    r = Runner("broadcast", folder)
    runner.append(r)
    assert r.check("cd examples/broadcast")
    r.run("cortexflow validate")
    assert "-->|" in r.run("cortexflow graph --format mermaid").stdout
    up = r.start("cortexflow up")
    up.wait_for(r"\) ready$", timeout=60, count=3)
    r.run(
        """echo '{"text": "hi", "users": ["ana", "bo", "blocked-cy"]}' | cortexflow enqueue broadcasts - --job-id b1"""
    )

    def summary() -> str | None:
        text = r.run("cortexflow job summaries summarise-b1 --json").stdout
        return text if '"state": "completed"' in text else None

    job = json.loads(wait_for(summary, 30, message=lambda: f"the summary\n{up.log()}"))
    assert job["result"] == {"sent": 2, "failed": ["b1-blocked-cy"], "of": 3}
    assert job["parent"] == {"queue": "broadcasts", "id": "b1"}
    assert "b1-blocked-cy" in r.run("cortexflow job broadcasts b1").stdout


@pytest.mark.slow
def test_api_service_readme(tmp_path: Path, runner: list[Runner]) -> None:
    # The "repository root": the shipped queues.yaml and schemas, and the app.
    shutil.copy(REPO / "queues.yaml", tmp_path / "queues.yaml")
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    copy_example("api_service", tmp_path / "examples")
    r = Runner("api_service", tmp_path)
    runner.append(r)
    assert r.check("pip install -e '.[examples]'")  # done: the test extra has aiohttp
    up = r.start("cortexflow up")
    up.wait_for(r"service\.0 \(pid \d+\) ready$", timeout=60)  # the six queues, one process
    port = str(free_port())
    r.run("python examples/api_service/app.py add-user s-1 > token.txt")
    app = r.start("python examples/api_service/app.py --port 8080", **{"8080": port})
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(url + "/health"), 30, message=lambda: f"the app answers\n{app.log()}")

    curl = r.run(
        """curl -s -X POST localhost:8080/webhooks/webchat -H 'content-type: application/json' -H "authorization: Bearer $(cat token.txt)" -d '{"text": "hello"}'""",
        **{"8080": port},
    )  # fmt: skip
    assert json.loads(curl.stdout)["success"] is True

    def replied() -> list[str]:
        jobs = json.loads(
            r.run("cortexflow jobs message-processing --state completed --json").stdout
        )
        return [j["result"]["reply"] for j in jobs]

    assert wait_for(replied, 30, message="the reply") == ["Hello! How can I help you today?"]
    r.run("cortexflow jobs webhook-processing --state failed")
    assert r.check("SMTP_URL='smtp://user:password@mail.example.com:587?starttls=1' cortexflow up")
