"""Every command, the way the docs show it: no -f, no --redis-url, no REDIS_URL.

Two ways to find queues.yaml, each a module-scoped project of its own: run in its folder
(``cwd``), or from another folder with ``$CORTEXFLOW_FILE`` naming it (``env``). The project is
what `cortexflow init` writes there (no ``redis:`` section, so the embedded server on its unix
socket), plus a second queue and a schedule. One `cortexflow up` runs it for the whole module,
as a user runs it in another shell; the other commands join its server. Its stop at the end
(SIGTERM: exit 0, the server gone) is checked when the module's project is torn down.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cortexflow.embedded import DataFolder
from tests.helpers.dashboard import wait_healthy
from tests.helpers.poll import wait_for
from tests.helpers.procs import CliResult, Proc, cortexflow_argv, run_cli, wait_gone

# What the starter file gets beside its `default` queue: a queue no case runs a job on (the
# destructive commands work there, on delayed jobs only), and a schedule for `schedules`.
EXTRA_YAML = """\
  spare:
    handler: tasks:handle

schedules:
  tick:
    queue: default
    every: 1h
"""


@dataclass
class App:
    mode: str
    folder: Path  # holds queues.yaml
    cwd: Path  # where the commands run
    env: dict[str, str]
    up: Proc
    server_pid: int

    def run(self, *args: str, input: str | None = None) -> CliResult:
        return run_cli(*args, cwd=self.cwd, env=self.env, input=input, timeout=60)

    def start(self, *args: str, name: str) -> Proc:
        return Proc(cortexflow_argv(*args), cwd=self.cwd, log_dir=self.folder.parent,
                    env=self.env, name=name)  # fmt: skip


def ok(r: CliResult, code: int = 0) -> CliResult:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == code, (
        f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    )
    return r


@pytest.fixture(scope="module", params=["cwd", "env"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"default-path-{mode}")
    folder = root / "app"
    folder.mkdir()
    if mode == "cwd":
        cwd, env = folder, {}
    else:
        cwd, env = root / "elsewhere", {"CORTEXFLOW_FILE": str(folder / "queues.yaml")}
        cwd.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        # Nothing of the shell that runs the suite may steer the commands elsewhere: procs'
        # clean_env drops REDIS_URL and CORTEXFLOW_FILE; the embedded server's and the
        # dashboard's settings go too.
        for key in list(os.environ):
            if key.startswith("CORTEXFLOW_") or key == "REDIS_URL":
                mp.delenv(key)
        init = ok(run_cli("init", cwd=cwd, env=env))
        written = {p.name for p in folder.iterdir()}
        assert {"queues.yaml", "tasks.py", "queues.schema.json"} <= written, init.stderr
        assert not (cwd / "queues.yaml").exists() or cwd == folder
        assert "next: cortexflow validate\n" in init.stderr  # the command as it will be typed
        text = (folder / "queues.yaml").read_text()
        assert not re.search(r"^redis:", text, re.M), "the starter file names a server"
        (folder / "queues.yaml").write_text(text.rstrip("\n") + "\n" + EXTRA_YAML)
        (cwd / "payload.json").write_text('{"hello": "world"}')

        up = Proc(cortexflow_argv("up"), cwd=cwd, log_dir=root, env=env, name="up")
        try:
            up.wait_for(r"\(pid \d+\) ready$", timeout=90, count=2)
            state = DataFolder(folder / ".cortexflow").read_state()
            assert state is not None and state.owner == "up", state
            yield App(mode, folder, cwd, env, up, state.pid)
            code = up.terminate(60)
            assert code == 0, up.log()[-4000:]
            assert "Traceback" not in up.log()
            assert wait_gone([state.pid], 15) == [], "the embedded server outlived `up`"
            assert DataFolder(folder / ".cortexflow").read_state() is None
        finally:
            up.kill()


# One case per command (and form): the steps run in order, each (argv, exit code, a pattern
# its stdout + stderr must match). Jobs a case adds have ids of its own.
Step = tuple[tuple[str, ...], int, str]
DELAYED = ("payload.json", "--delay", "1h", "--job-id")
CASES: dict[str, list[Step]] = {
    "validate": [(("validate",), 0, r"queues\.yaml is valid: 2 queues")],
    "schema": [(("schema",), 0, r'"\$schema": ')],
    "config": [(("config",), 0, r"(?m)^redis:\n  url: null$")],
    "init": [(("init",), 1, r"already exists; cortexflow init never overwrites a file")],
    "status": [(("status",), 0, r"(?m)^\S+\s+default\s+0\s+\d+\s+\w+")],
    "stats": [(("stats",), 0, r"(?m)^QUEUE\s+WAITING.*\n(default|spare)\s+\d+")],
    "stats --json": [(("stats", "--json"), 0, r'"queueName": "spare"')],
    "health": [(("health",), 0, r"(?m)^healthy$")],
    "enqueue --wait": [
        (("enqueue", "default", "payload.json", "--wait"), 0, r'"received": \{"hello": "world"\}')
    ],
    "jobs": [
        (("enqueue", "default", "payload.json", "--job-id", "jobs-1"), 0, r"^jobs-1\n$"),
        (("jobs", "default"), 0, r"(?m)^ID\s+STATE.*\n(.*\n)*jobs-1\s"),
    ],
    "job": [
        (("enqueue", "default", "payload.json", "--job-id", "job-1", "--wait"), 0, r"hello"),
        (("job", "default", "job-1"), 0, r"(?m)^id:\s+job-1\n(.*\n)*state:\s+completed$"),
    ],
    "pause, resume": [
        (("pause", "spare"), 0, r"^paused 'spare'"),
        (("resume", "spare"), 0, r"^resumed 'spare'"),
    ],
    "retry": [(("retry", "default", "--all"), 0, r"moved 0 failed job\(s\) of 'default'")],
    "promote": [
        (("enqueue", "default", *DELAYED, "promote-1"), 0, r"^promote-1\n$"),
        (("promote", "default", "promote-1"), 0, r"job promote-1 of 'default' is waiting now"),
    ],
    "remove": [
        (("enqueue", "spare", *DELAYED, "remove-1"), 0, r"^remove-1\n$"),
        (("remove", "spare", "remove-1", "--yes"), 0, r"removed job remove-1 from 'spare'"),
    ],
    "clean": [(("clean", "spare", "--grace", "1h", "--yes"), 0, r"removed 0 completed job")],
    "drain": [
        (("enqueue", "spare", *DELAYED, "drain-1"), 0, r"^drain-1\n$"),
        (
            ("drain", "spare", "--delayed", "--yes"),
            0,
            r"removed 1 waiting and delayed job\(s\) from 'spare'",
        ),
    ],
    "obliterate": [
        (("enqueue", "spare", *DELAYED, "obliterate-1"), 0, r"^obliterate-1\n$"),
        (("obliterate", "spare", "--yes"), 0, r"obliterated 'spare': [1-9]\d* job\(s\) removed"),
    ],
    "analytics": [(("analytics",), 0, r'"day": "\d{4}-\d\d-\d\d"')],
    "schedules": [(("schedules",), 0, r"(?m)^SCHEDULE\s+QUEUE.*\ntick\s+default\s+every 1h")],
    "schedules trigger": [(("schedules", "trigger", "tick"), 0, r"^\S+\n$")],
    "events --count": [
        (("enqueue", "default", "payload.json", "--job-id", "events-1"), 0, r"^events-1\n$"),
        (("events", "default", "--from", "0", "--count", "1"), 0, r"\S+Z  \w+  \S+"),
    ],
}


# What `up` publishes (its processes, the workers it expects) may lag its "ready" lines by a
# publication interval: these are asked again until they say it, within a deadline.
POLLED = {"status", "health"}


def run_step(app: App, argv: tuple[str, ...], code: int, pattern: str, poll: bool) -> None:
    runs: list[CliResult] = []

    def matches() -> bool:
        runs.append(r := ok(app.run(*argv), code))
        return bool(re.search(pattern, r.stdout + r.stderr))

    if poll:
        wait_for(matches, 30, interval=0.5, message=lambda: f"{argv} {pattern!r}: {runs[-1]}")
    else:
        assert matches(), (argv, runs[-1].stdout, runs[-1].stderr)


@pytest.mark.parametrize("case", list(CASES))
def test_command(app: App, case: str) -> None:
    for argv, code, pattern in CASES[case]:
        run_step(app, argv, code, pattern, poll=case in POLLED)


def test_enqueue_from_stdin(app: App) -> None:
    """README: `echo '{...}' | cortexflow enqueue QUEUE -`."""
    r = ok(app.run("enqueue", "default", "-", input='{"to": "ada@example.com"}\n'))
    job_id = r.stdout.strip()
    assert re.fullmatch(r"\S+", job_id), r.stdout
    job = json.loads(ok(app.run("job", "default", job_id, "--json")).stdout)
    assert job["data"] == {"to": "ada@example.com"}


def test_up(app: App) -> None:
    """The module's `up`: the embedded server on the folder's unix socket, both queues ready
    (its stop is checked when the module's project is torn down)."""
    assert app.up.alive(), app.up.log()
    sock = app.folder / ".cortexflow"
    log = app.up.log()
    assert re.search(rf"embedded server \(pid {app.server_pid}\) on unix://{re.escape(str(sock))}",
                     log), log  # fmt: skip
    assert "Traceback" not in log


def stop(proc: Proc, sig: signal.Signals, code: int = 0) -> str:
    proc.send(sig)
    assert proc.wait_exit(30) == code, proc.log()
    log = proc.log()
    proc.kill()
    assert "Traceback" not in log
    return log


def test_worker(app: App) -> None:
    worker = app.start("worker", "default", name="worker")
    try:
        worker.wait_for(r"worker ready: queue=default", timeout=60)
        stop(worker, signal.SIGTERM)
    finally:
        worker.kill()


def test_dashboard(app: App) -> None:
    dashboard = app.start("dashboard", "--port", "0", name="dashboard")  # a free port
    try:
        (url,) = dashboard.wait_for(r"dashboard: open (http://127\.0\.0\.1:\d+)/", 60)
        base = url.group(1)
        wait_healthy(dashboard, base)
        assert f"dashboard: open {base}/" in stop(dashboard, signal.SIGTERM)
    finally:
        dashboard.kill()


def test_stats_watch(app: App) -> None:
    """docs/cli.md: refreshes until Ctrl-C (exit 0); without a terminal, a table per refresh."""
    watch = app.start("stats", "--watch", "--interval", "250ms", name="watch")
    try:
        wait_for(lambda: watch.out().count("QUEUE ") >= 2, 60,
                 message=lambda: f"two refreshes\n{watch.log()}")  # fmt: skip
        stop(watch, signal.SIGINT)
    finally:
        watch.kill()


def test_events_follow(app: App) -> None:
    """docs/cli.md: like tail -f, from what happens next; Ctrl-C stops, exit 0."""
    events = app.start("events", "default", name="events")
    added: list[str] = []

    def seen() -> bool:
        # It prints only what comes after it started reading: add jobs until one shows.
        assert events.alive(), events.log()
        added.append(ok(app.run("enqueue", "default", "payload.json")).stdout.strip())
        return any(f"added  {job_id}" in events.out() for job_id in added)

    try:
        wait_for(seen, 60, interval=0.2, message=lambda: f"an added event\n{events.log()}")
        stop(events, signal.SIGINT)
    finally:
        events.kill()


def test_options_before_schedules_trigger_are_kept(app: App) -> None:
    """`schedules -f FILE trigger NAME`: the subcommand's parser used to reset -f (and --json)
    to their defaults, so the file given was ignored."""
    path = str(app.folder / "queues.yaml")
    elsewhere = app.folder.parent  # no queues.yaml here, no $CORTEXFLOW_FILE
    r = ok(run_cli("schedules", "-f", path, "--json", "trigger", "tick", cwd=elsewhere))
    assert json.loads(r.stdout)["schedule"] == "tick"
    r = ok(run_cli("schedules", "trigger", "tick", "-f", path, "-q", cwd=elsewhere))
    assert re.fullmatch(r"\S+\n", r.stdout), r.stdout


def test_schedules_declared_but_not_stored_yet(tmp_path: Path) -> None:
    """Before the first `up`, queues.yaml's schedules are not in Redis: say so, rather than
    "no schedules" or "no schedule named" for the ones the file declares."""
    ok(run_cli("init", cwd=tmp_path))
    path = tmp_path / "queues.yaml"
    path.write_text(path.read_text().rstrip("\n") + "\n" + EXTRA_YAML)
    r = ok(run_cli("schedules", cwd=tmp_path))
    assert (
        "no schedules stored yet: queues.yaml declares 1, which `cortexflow up` stores" in r.stderr
    )
    r = ok(run_cli("schedules", "trigger", "tick", cwd=tmp_path), 2)
    assert "schedule 'tick' is declared in queues.yaml but not stored yet" in r.stderr
    r = ok(run_cli("schedules", "trigger", "nope", cwd=tmp_path), 2)
    assert "no schedule named 'nope'" in r.stderr
    assert DataFolder(tmp_path / ".cortexflow").read_state() is None  # each stopped its server
