"""The worker side of a task: taskiq's middleware hooks in taskiq's order, TaskiqDepends (a
generator dependency closed after each run), Context.requeue() as the engine's release,
progress, and what a broker may ask that cortexflow refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from taskiq.exceptions import SendTaskError

from cortexflow.config import check_config
from cortexflow.worker.handlers import HandlerImportError
from cortexflow.worker.queue_worker import QueueWorker
from tests.helpers.poll import wait_for_async
from tests.taskiq.conftest import QUEUES, App

HOOKS = """
from taskiq import TaskiqMiddleware

calls = []

class Recorder(TaskiqMiddleware):
    def __init__(self, name):
        super().__init__()
        self.name = name
    def pre_send(self, message):
        calls.append((self.name, "pre_send"))
        return message
    def post_send(self, message):
        calls.append((self.name, "post_send"))
    async def pre_execute(self, message):
        calls.append((self.name, "pre_execute"))
        return message
    def on_error(self, message, result, exception):
        calls.append((self.name, "on_error", type(exception).__name__))
    async def post_execute(self, message, result):
        calls.append((self.name, "post_execute", result.is_err))
    def post_save(self, message, result):
        calls.append((self.name, "post_save"))

broker.add_middlewares(Recorder("a"), Recorder("b"))

@broker.task(queue="emails", attempts=1)
async def works():
    calls.append(("task",))
    return 1

@broker.task(queue="emails", attempts=1)
async def fails():
    calls.append(("task",))
    raise ValueError("no")
"""


def test_middleware_hooks_run_in_taskiqs_order(make_app: Callable[..., App]) -> None:
    app = make_app(HOOKS)
    calls = app.module.calls

    async def main() -> None:
        async with app.workers("emails"):
            await (await app.module.works.kiq()).wait_result(timeout=10)
            success = list(calls)
            calls.clear()
            result = await (await app.module.fails.kiq()).wait_result(timeout=10)
            assert result.is_err
            failure = list(calls)
        sent = [("a", "pre_send"), ("b", "pre_send"), ("b", "post_send"), ("a", "post_send")]
        received = [("a", "pre_execute"), ("b", "pre_execute"), ("task",)]
        assert success == [
            *sent,
            *received,
            ("b", "post_execute", False),
            ("a", "post_execute", False),
            ("b", "post_save"),
            ("a", "post_save"),
        ]
        assert failure == [
            *sent,
            *received,
            ("b", "on_error", "ValueError"),
            ("a", "on_error", "ValueError"),
            ("b", "post_execute", True),
            ("a", "post_execute", True),
            ("b", "post_save"),
            ("a", "post_save"),
        ]

    asyncio.run(main())


DEPENDS = """
from typing import Annotated
from taskiq import Context, TaskiqDepends
from cortexflow.taskiq import JobContext

events = []

def session():
    events.append("open")
    try:
        yield "session"
    except Exception as exc:
        events.append(f"saw {type(exc).__name__}")
        raise
    finally:
        events.append("closed")

@broker.task(queue="emails", attempts=1)
async def uses(
    n: int,
    s: Annotated[str, TaskiqDepends(session)],
    ctx: Context = TaskiqDepends(),
    job: JobContext = TaskiqDepends(),
) -> list:
    assert events[-1] == "open"  # not closed while the task runs
    if n < 0:
        raise KeyError(n)
    return [n, s, ctx.message.task_id == job.id, job.queue]
"""


def test_generator_dependency_is_closed_after_each_run(make_app: Callable[..., App]) -> None:
    app = make_app(DEPENDS)

    async def main() -> None:
        async with app.workers("emails"):
            for n in range(3):
                result = await (await app.module.uses.kiq(n)).wait_result(timeout=10)
                assert result.return_value == [n, "session", True, "emails"]
            assert app.module.events == ["open", "closed"] * 3
            app.module.events.clear()
            result = await (await app.module.uses.kiq(-1)).wait_result(timeout=10)
            assert result.is_err
            assert app.module.events == ["open", "saw KeyError", "closed"]

    asyncio.run(main())


REQUEUE = """
from cortexflow.taskiq import JobContext
from taskiq import Context, TaskiqDepends
from taskiq.depends.progress_tracker import ProgressTracker
import asyncio

seen = []
go = asyncio.Event()

@broker.task(queue="emails")
async def again(ctx: Context = TaskiqDepends(), job: JobContext = TaskiqDepends()) -> int:
    seen.append(job.attempt)
    if len(seen) == 1:
        await ctx.requeue()
    return len(seen)

@broker.task(queue="emails")
async def progress(tracker: ProgressTracker[dict] = TaskiqDepends()) -> str:
    await tracker.set_progress("STARTED", {"done": 1})
    await go.wait()
    return "ok"
"""


def test_context_requeue_gives_the_job_back_without_an_attempt(
    make_app: Callable[..., App],
) -> None:
    app = make_app(REQUEUE)

    async def main() -> None:
        async with app.workers("emails"):
            task = await app.module.again.kiq()
            assert (await task.wait_result(timeout=10)).return_value == 2
            job = await app.broker.manager.get_queue("emails").get_job(task.task_id)
            assert job is not None and job.attempts_made == 1  # the requeued run is not one
        assert app.module.seen == [1, 1]

    asyncio.run(main())


def test_progress_of_a_running_task(make_app: Callable[..., App]) -> None:
    app = make_app(REQUEUE)

    async def main() -> None:
        async with app.workers("emails"):
            task = await app.module.progress.kiq()

            async def started() -> bool:
                progress = await task.get_progress()
                return progress is not None and progress.meta == {"done": 1}

            await wait_for_async(started, 10, message="progress set")
            assert (await task.get_progress()).state == "STARTED"
            app.module.go.set()
            assert (await task.wait_result(timeout=10)).return_value == "ok"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        (
            "from taskiq.middlewares import SmartRetryMiddleware\n"
            "broker.add_middlewares(SmartRetryMiddleware())",
            "use attempts/backoff in queues.yaml",
        ),
        (
            "from taskiq.middlewares import SimpleRetryMiddleware\n"
            "broker.add_middlewares(SimpleRetryMiddleware())",
            "use attempts/backoff in queues.yaml",
        ),
        (
            "from taskiq.serializers import PickleSerializer\n"
            "from taskiq.formatters.proxy_formatter import ProxyFormatter\n"
            "broker.with_serializer(PickleSerializer()).with_formatter(ProxyFormatter(broker))",
            "is not JSON",
        ),
        (
            "from taskiq.serializers import PickleSerializer\n"
            "broker.with_serializer(PickleSerializer())",
            "is not JSON",
        ),
    ],
)
def test_what_cortexflow_cannot_honour_is_refused_at_startup(
    make_app: Callable[..., App], setup: str, refusal: str
) -> None:
    app = make_app(setup)

    async def main() -> None:
        worker = QueueWorker(app.config, "emails", app.url)
        with pytest.raises(HandlerImportError, match=refusal):
            await worker.start()

    asyncio.run(main())


def test_validate_checks_the_queue_labels_of_the_tasks(tmp_path: Path) -> None:
    """A broker whose task names a queue the file does not declare (a plain taskiq broker, so
    nothing failed at decoration): `validate` points at the queue's tasks: line."""
    (tmp_path / "elsewhere.py").write_text(
        "from taskiq import InMemoryBroker\n"
        "broker = InMemoryBroker()\n"
        "@broker.task(queue_name='emials')\n"
        "async def send(): ...\n"
    )
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(mod="elsewhere"))
    config, diagnostics = check_config(path)
    assert config is None
    [problem] = [d for d in diagnostics if d.code == "tasks.unknown_queue"]
    assert (problem.line, problem.column) == (5, 12)  # `tasks:` of queue emails
    assert "'emials'" in problem.message or '"emials"' in problem.message
    assert "emails, reports" in (problem.hint or "")


def test_validate_cli_reports_the_tasks_line_and_config_prints_tasks(
    make_app: Callable[..., App], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    app = make_app("")
    shown = cli("config", "-f", str(app.path))
    assert shown.returncode == 0, shown.stderr
    assert f"tasks: {app.module.__name__}:broker" in shown.stdout
    assert "handler: ''" not in shown.stdout
    app.path.write_text(
        app.path.read_text().replace(
            "    concurrency: 1\n", "    concurrency: 1\n    handler: x:y\n", 1
        )
    )
    checked = cli("validate", "-f", str(app.path))
    assert checked.returncode != 0
    assert "queues.yaml:12:12" in checked.stdout + checked.stderr  # the `tasks:` of reports
    assert "has both handler and tasks" in checked.stdout + checked.stderr


def test_a_label_that_is_not_a_number_fails_the_kiq(make_app: Callable[..., App]) -> None:
    app = make_app('@broker.task(queue="emails")\nasync def t(): ...\n')

    async def main() -> None:
        with pytest.raises(SendTaskError) as failed:
            await app.module.t.kicker().with_labels(priority="high").kiq()
        assert "label priority" in str(failed.value.__cause__)
        await app.broker.manager.close()

    asyncio.run(main())
