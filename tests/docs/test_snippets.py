"""Every ```python block of README.md and docs/*.md runs, against a real server.

The blocks of one file run in order in one namespace, like a notebook: a block with top-level
``await`` runs on an event loop that lives for the whole file (so a manager made in one block is
used in the next); a block without runs in the main thread, where no loop runs (as a script's
code would, e.g. SyncQueueManager). The project is a copy of the shipped queues.yaml with its
payload schemas, found through CORTEXFLOW_FILE / REDIS_URL as a user's would be.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.jobs import finish_tasks
from tests.helpers.project import REPO

BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks(doc: Path) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for each ```python block."""
    if not doc.exists():
        return []
    text = doc.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(finish_tasks(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    # Finalizers of whatever a block leaked run now, not inside some later unrelated code.
    gc.collect()


def test_the_docs_have_python_blocks() -> None:
    assert python_blocks(REPO / "README.md")
    assert python_blocks(REPO / "docs" / "api.md")


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if python_blocks(d)], ids=lambda d: str(d.relative_to(REPO))
)
def test_python_blocks_run(
    doc: Path,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    loop: asyncio.AbstractEventLoop,
) -> None:
    shutil.copy(REPO / "queues.yaml", tmp_path / "queues.yaml")
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORTEXFLOW_FILE", str(tmp_path / "queues.yaml"))
    monkeypatch.setenv("REDIS_URL", redis_url)

    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        for line, code in python_blocks(doc):
            where = f"{doc.relative_to(REPO)}:{line}"
            compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            if compiled.co_flags & inspect.CO_COROUTINE:
                coro = eval(compiled, namespace)
                asyncio.run_coroutine_threadsafe(coro, loop).result(60)
            else:
                exec(compiled, namespace)
    finally:
        _release(namespace, loop)


def _release(namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    """Stop workers and close managers a block left open."""
    from cortexflow import QueueManager, WorkerManager

    for value in namespace.values():
        if isinstance(value, WorkerManager) and value.queues:
            asyncio.run_coroutine_threadsafe(value.stop_all(2), loop).result(30)
        elif isinstance(value, QueueManager):
            asyncio.run_coroutine_threadsafe(value.close(), loop).result(30)
